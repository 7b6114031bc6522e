package follow_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// ckTarget is a target that takes whole changes and checkpoints.
type ckTarget struct {
	*target
	mu      sync.Mutex // guards below
	changes []record.Change
	events  []string // "caught" and "checkpoint", in order
	ckpts   []*checkpoint.Checkpoint
}

func (t *ckTarget) InvalidateChange(c record.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changes = append(t.changes, c)
}

func (t *ckTarget) CaughtUp(from, to record.Version) {
	t.mu.Lock()
	t.events = append(t.events, "caught")
	t.mu.Unlock()
	t.target.CaughtUp(from, to)
}

func (t *ckTarget) CheckpointSpaces() []string { return []string{"keys", "routes"} }

func (t *ckTarget) TakeCheckpoint(c *checkpoint.Checkpoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, "checkpoint")
	t.ckpts = append(t.ckpts, c)
}

// TestFollowerCarriesSealsAndCheckpoints: a Target that takes whole
// changes gets each log entry with its Seal (the digest a state hash
// needs), and one that takes checkpoints gets the latest of each
// namespace it names (read from the store, as it stands before the log
// read) after the read's CaughtUp; a namespace without one is skipped.
func TestFollowerCarriesSealsAndCheckpoints(t *testing.T) {
	s := mem.New()
	_, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	clock := record.NewClock(nil)
	rec := publish(t, s, signer.Sign(record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: clock.Now()}))
	now := time.Now()
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: rec.Version, Count: 1, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	if err := c.Sign(signer); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.PutLatest(context.Background(), s, c); err != nil {
		t.Fatal(err)
	}
	tg := &ckTarget{target: newTarget()}
	f, _ := start(t, s, tg, record.MakeVersion(now.Add(-time.Minute), 0), nil)
	readOnce(t, f, tg.target)
	eventually(t, 10*time.Second, "the checkpoint handed over", func() bool {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return len(tg.ckpts) >= 1 // one per read: the start read too
	})
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if len(tg.changes) < 1 || tg.changes[0].Seal == nil || tg.changes[0].Seal.Digest != rec.Seal.Digest {
		t.Fatalf("changes handed whole: %+v, want %s/%s with its seal", tg.changes, rec.Namespace, rec.Key)
	}
	if got := tg.ckpts[0]; got.Namespace != "keys" || got.Version != c.Version || !got.Hash.Equal(&c.Hash) {
		t.Fatalf("checkpoint handed: %v, want %v", got, c)
	}
	for i, e := range tg.events {
		if e == "checkpoint" && (i == 0 || tg.events[i-1] == "checkpoint") {
			t.Fatalf("events %v: want each checkpoint after its read's CaughtUp", tg.events)
		}
	}
	if v := tg.target.versions("keys/k"); len(v) != 0 {
		t.Fatalf("Invalidate called too (%v): a ChangeInvalidator takes the change instead", v)
	}
}
