package publisher_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// TestAckCheckAcrossProcesses: publisher A (a signer, no checkpoints)
// acknowledges a delete; a bucket writer removes its log entry and puts
// the key's previous record back; issuer B, another Publisher on another
// handle of the directory, signs a checkpoint without it. A's check of
// the writes it acknowledged (RunAckCheck) publishes the delete again
// under a fresh version, so B's next checkpoint carries it; a write whose
// entry the log still holds is not published again.
func TestAckCheckAcrossProcesses(t *testing.T) {
	ctx := testCtx(t)
	signer, keys := signingKeys(t)
	a, b, open := acknowledgerAndIssuer(t, signer)
	root := open().Root() // the directory, as the bucket writer sees it
	kept, err := a.pub.Put(ctx, "keys", "kept", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := a.pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	raw := open()
	objPath := raw.RecordPath("keys", "revoked")
	oldObj, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	del, err := a.pub.Delete(ctx, "keys", "revoked")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "log"))
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), del.Version.String()+"-") {
			if err := os.Remove(filepath.Join(root, "log", e.Name())); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	if removed != 1 {
		t.Fatalf("removed %d log entries, want 1", removed)
	}
	if err := os.WriteFile(objPath, oldObj, 0o644); err != nil {
		t.Fatal(err)
	}
	// B signs the state the writer left, just past the delete (a pass at
	// the time its LogSettle, 1.2 s, is over): both keys present.
	hidden, err := b.pub.IssueCheckpoints(ctx, del.Version.Time().Add(1200*time.Millisecond+time.Millisecond))
	if err != nil || len(hidden) != 1 {
		t.Fatalf("B issued %d checkpoints, %v; want 1", len(hidden), err)
	}
	var h statehash.Hash
	h.Add(statehash.ElementOf(kept))
	h.Add(statehash.ElementOf(old))
	if hidden[0].Version < del.Version {
		t.Fatalf("B's checkpoint at %s is not past the delete at %s", hidden[0].Version, del.Version)
	}
	if err := checkpoint.Match(hidden[0], &h, 2); err != nil {
		t.Fatalf("B's checkpoint is not the state without the delete (the test needs it): %v", err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.pub.RunAckCheck(runCtx) }()
	defer func() { stop(); <-done }()
	// A checks once the delete is settled (LogSettle after its version).
	testkit.Eventually(t, 20*time.Second, "A publishes the delete again", func() bool {
		r, err := raw.Get(ctx, "keys", "revoked", 0)
		return err == nil && r.Tombstone && r.Version > del.Version
	})
	again, _ := raw.Get(ctx, "keys", "revoked", 0)
	if n := a.metric(t, "dataplane_publisher_acknowledged_missing_total"); n != 1 {
		t.Fatalf("acknowledged_missing_total = %v, want 1 (only the delete was missing)", n)
	}
	if r, _ := raw.Get(ctx, "keys", "kept", 0); r.Version != kept.Version {
		t.Fatalf("kept was written again (%s, was %s): its entry was in the log", r.Version, kept.Version)
	}
	// B's next checkpoint carries the delete.
	var next []*checkpoint.Checkpoint
	testkit.Eventually(t, 20*time.Second, "B signs a checkpoint with the delete", func() bool {
		next, err = b.pub.IssueCheckpoints(ctx, time.Now().Add(2*time.Second))
		return err == nil && len(next) == 1
	})
	var want statehash.Hash
	want.Add(statehash.ElementOf(kept))
	want.Add(statehash.ElementOf(again))
	if err := checkpoint.Match(next[0], &want, 2); err != nil {
		t.Fatalf("B's checkpoint after the republish: %v", err)
	}
	v := &checkpoint.Verifier{Keys: keys, MaxSkew: 5 * time.Second}
	if err := v.Verify(next[0], hidden[0]); err != nil {
		t.Fatal(err)
	}
}

// TestAckCheckMissesRemoveAndRestore shows what the check cannot see: a
// bucket writer who removes a delete's log entry before issuer B reads
// the log and puts it back once B has signed past it. A then finds the
// entry in the log and publishes nothing again, and B, whose cursor has
// passed the entry's version, keeps signing the state without it (the
// README's security section lists this as open).
func TestAckCheckMissesRemoveAndRestore(t *testing.T) {
	ctx := testCtx(t)
	signer, _ := signingKeys(t)
	a, b, open := acknowledgerAndIssuer(t, signer)
	root := open().Root() // the directory, as the bucket writer sees it
	old, err := a.pub.Put(ctx, "keys", "revoked", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	raw := open()
	objPath := raw.RecordPath("keys", "revoked")
	oldObj, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	del, err := a.pub.Delete(ctx, "keys", "revoked")
	if err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(root, "log")
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	var entry []byte
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), del.Version.String()+"-") {
			name = e.Name()
		}
	}
	if name == "" {
		t.Fatal("no log entry of the delete")
	}
	if entry, err = os.ReadFile(filepath.Join(logDir, name)); err != nil {
		t.Fatal(err)
	}
	delObj, err := os.ReadFile(objPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(logDir, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objPath, oldObj, 0o644); err != nil {
		t.Fatal(err)
	}
	hidden, err := b.pub.IssueCheckpoints(ctx, del.Version.Time().Add(1200*time.Millisecond+time.Millisecond))
	if err != nil || len(hidden) != 1 || hidden[0].Version < del.Version {
		t.Fatalf("B issued %v, %v; want one checkpoint past the delete", hidden, err)
	}
	// Put back once B has signed.
	if err := os.WriteFile(filepath.Join(logDir, name), entry, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(objPath, delObj, 0o644); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.pub.RunAckCheck(runCtx) }()
	// A's check runs every 20 ms from LogSettle after the delete; give it
	// a settle window more, then B passes again.
	time.Sleep(time.Until(del.Version.Time().Add(2500 * time.Millisecond)))
	stop()
	<-done
	if n := a.metric(t, "dataplane_publisher_acknowledged_missing_total"); n != 0 {
		t.Fatalf("acknowledged_missing_total = %v: the check saw the removal (update the README's security section)", n)
	}
	var h statehash.Hash
	h.Add(statehash.ElementOf(old))
	later, err := b.pub.IssueCheckpoints(ctx, time.Now().Add(30*time.Second+time.Second))
	if err != nil || len(later) != 1 {
		t.Fatalf("B's renewal: %v, %v", later, err)
	}
	if err := checkpoint.Match(later[0], &h, 1); err != nil {
		t.Fatalf("B's later checkpoint is not the state without the delete (update the README's security section): %v", err)
	}
}

// acknowledgerAndIssuer returns two publishers on handles of their own of
// one directory origin, as two processes would hold it: a acknowledges
// writes and checks them against the log every 20 ms, issuing no
// checkpoints; b issues the checkpoints of keys. open opens one more
// handle, as a bucket writer would.
func acknowledgerAndIssuer(t *testing.T, signer *sign.Signer) (a, b *env, open func() *dir.Store) {
	t.Helper()
	root := t.TempDir()
	open = func() *dir.Store {
		s, err := dir.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a = newEnv(t, open(), func(c *publisher.Config) {
		checkpointConfig(signer, 0)(c)
		c.IssueCheckpoints, c.Timing.LogInterval = false, 20*time.Millisecond
	})
	b = newEnv(t, open(), func(c *publisher.Config) {
		checkpointConfig(signer, 0)(c)
		c.Namespaces = []string{"keys"}
	})
	return a, b, open
}
