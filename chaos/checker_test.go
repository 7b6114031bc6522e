package chaos

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

// TestCheckerTwoWritesOneVersion: two publishers send different values
// under one version of one key; the store takes the first, refuses the
// second. Reads serving the value the store took are no violation, even
// though the loser's record was sent to a compare-and-swap after it (the
// checker once kept only the last record sent per version, and reported
// every read of the winner as "a value that differs from the one
// written"); a read serving the loser's value is one.
func TestCheckerTwoWritesOneVersion(t *testing.T) {
	ctx := context.Background()
	store := mem.New()
	c := NewChecker()
	pubs := []*WriteFaults{NewWriteFaults(store, nil), NewWriteFaults(store, nil)}
	for _, w := range pubs {
		w.Sent, w.Landed = c.Sent, c.Wrote
	}
	v := record.MakeVersion(time.Now(), 0)
	winner := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("winner"), Version: v}
	loser := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("loser"), Version: v}
	if err := pubs[0].CompareAndSwap(ctx, winner, 0); err != nil {
		t.Fatal(err)
	}
	if err := pubs[1].CompareAndSwap(ctx, loser, 0); !errors.Is(err, origin.ErrConflict) {
		t.Fatalf("second CompareAndSwap under one version: %v, want ErrConflict", err)
	}
	got, err := store.Get(ctx, "routes", "a.example.com", 0)
	if err != nil || string(got.Value) != "winner" {
		t.Fatalf("store holds %q, %v; want the winner", got.Value, err)
	}
	read := func(node string, val []byte) {
		now := time.Now()
		c.Record(Read{Node: node, Namespace: "routes", Key: "a.example.com", Start: now, End: now,
			Outcome: Value, Version: v, Value: val, Phase: Settled})
	}
	read("node-0", got.Value)
	read("node-1", got.Value)
	latest := map[string]record.Version{id("routes", "a.example.com"): v}
	if s := c.Check(latest); s.Violations != 0 {
		t.Fatalf("reads of the value the store holds: %d violations, want none: %v", s.Violations, s.Listed)
	}
	read("node-2", loser.Value)
	if s := c.Check(latest); s.ByKind[KindUnknown] != 1 {
		t.Fatalf("a read of the refused value: %v, want one %q violation", s.ByKind, KindUnknown)
	}
}

// TestCheckerUnconfirmedCandidates: while no compare-and-swap under a
// version is known to have landed (every one timed out, say, and the
// server may still have applied any), a read may serve any record sent
// under it, and nothing else.
func TestCheckerUnconfirmedCandidates(t *testing.T) {
	c := NewChecker()
	v := record.MakeVersion(time.Now(), 0)
	c.Sent(record.Record{Namespace: "keys", Key: "ks/1", Value: []byte("one"), Version: v})
	c.Sent(record.Record{Namespace: "keys", Key: "ks/1", Version: v, Tombstone: true})
	now := time.Now()
	for _, r := range []Read{
		{Node: "n0", Outcome: Value, Value: []byte("one")},
		{Node: "n1", Outcome: NotFound},
	} {
		r.Namespace, r.Key, r.Version, r.Start, r.End = "keys", "ks/1", v, now, now
		c.Record(r)
	}
	if s := c.Check(nil); s.Violations != 0 {
		t.Fatalf("reads of records sent under the version: %v", s.Listed)
	}
	c.Record(Read{Node: "n2", Namespace: "keys", Key: "ks/1", Version: v, Outcome: Value, Value: []byte("two"), Start: now, End: now})
	if s := c.Check(nil); s.ByKind[KindUnknown] != 1 {
		t.Fatalf("a read of a value never sent: %v, want one %q violation", s.ByKind, KindUnknown)
	}
}

// TestCheckerFailClosed: in a fail-closed namespace a refusal is the
// policy's answer, not an unavailable held key; inside a window where
// every read must be refused, serving a value is a violation; a refusal in
// a namespace that serves stale is one too.
func TestCheckerFailClosed(t *testing.T) {
	c := NewChecker()
	c.FailsClosed("keys")
	v := record.MakeVersion(time.Now(), 0)
	c.Wrote(record.Record{Namespace: "keys", Key: "ks/1", Value: []byte("k"), Version: v})
	t0 := time.Now()
	c.MustRefuse("keys", t0.Add(time.Second), t0.Add(2*time.Second))
	refused := errors.New("refused")
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, r := range []Read{
		{Node: "n0", Start: at(0), Outcome: Value, Version: v, Value: []byte("k")},                                // before the window: may serve
		{Node: "n0", Start: at(500 * time.Millisecond), Held: true, Outcome: Failed, Refused: true, Err: refused}, // may refuse a held key
		{Node: "n0", Start: at(1500 * time.Millisecond), Held: true, Outcome: Failed, Refused: true, Err: refused},
		{Node: "n0", Start: at(3 * time.Second), Outcome: Value, Version: v, Value: []byte("k")}, // after the window
	} {
		r.Namespace, r.Key, r.End = "keys", "ks/1", r.Start.Add(time.Millisecond)
		c.Record(r)
	}
	if s := c.Check(nil); s.Violations != 0 || s.Refused != 2 || s.MustRefuse != 1 {
		t.Fatalf("refusals allowed by the policy: %+v", s)
	}
	c.Record(Read{Node: "n1", Namespace: "keys", Key: "ks/1", Start: at(1200 * time.Millisecond), End: at(1201 * time.Millisecond), Held: true, Outcome: Value, Version: v, Value: []byte("k")})
	if s := c.Check(nil); s.ByKind[KindFailClosed] != 1 {
		t.Fatalf("a value served past D in an outage: %v, want one %q violation", s.ByKind, KindFailClosed)
	}
	c = NewChecker()
	c.FailsClosed("keys")
	c.Record(Read{Node: "n1", Namespace: "routes", Key: "a.example.com", Start: at(0), End: at(1), Held: true, Outcome: Failed, Refused: true, Err: refused})
	if s := c.Check(nil); s.ByKind[KindFailClosed] != 1 {
		t.Fatalf("a refusal in a serve-stale namespace: %v, want one %q violation", s.ByKind, KindFailClosed)
	}
}

// TestCheckerRevoked: under a revocation bound, a value older than a
// tombstone published more than the bound before the read is a KindRevoked
// violation; the same read within the bound, a refusal, the tombstone
// itself and a newer version are not.
func TestCheckerRevoked(t *testing.T) {
	c := NewChecker()
	c.FailsClosed("keys")
	const bound = 5 * time.Second
	c.RevocationBound("keys", bound)
	t0 := time.Now()
	v1 := record.MakeVersion(t0, 0)
	v2 := record.MakeVersion(t0.Add(time.Second), 0)
	v3 := record.MakeVersion(t0.Add(2*time.Second), 0)
	put := record.Record{Namespace: "keys", Key: "k", Value: []byte("secret"), Version: v1}
	del := record.Record{Namespace: "keys", Key: "k", Version: v2, Tombstone: true}
	again := record.Record{Namespace: "keys", Key: "k", Value: []byte("new"), Version: v3}
	for _, r := range []record.Record{put, del, again} {
		c.Wrote(r)
	}
	published := t0.Add(time.Second)
	c.Revoked(del, published)
	read := func(node string, at time.Duration, o Outcome, v record.Version, val []byte, refused bool) {
		start := published.Add(at)
		c.Record(Read{Node: node, Namespace: "keys", Key: "k", Start: start, End: start.Add(time.Millisecond),
			Outcome: o, Version: v, Value: val, Refused: refused})
	}
	read("within", bound-time.Second, Value, v1, put.Value, false)  // still within the bound
	read("refused", bound+time.Second, Failed, 0, nil, true)        // refused: the policy's answer
	read("deleted", bound+time.Second, NotFound, v2, nil, false)    // the tombstone
	read("newer", bound+time.Second, Value, v3, again.Value, false) // a newer version
	s := c.Check(nil)
	if s.Violations != 0 || s.PastRevocation != 2 {
		t.Fatalf("got %d violations (%v), %d reads past the bound; want 0 and 2", s.Violations, s.Listed, s.PastRevocation)
	}
	read("revoked", bound+time.Second, Value, v1, put.Value, false)
	if s := c.Check(nil); s.ByKind[KindRevoked] != 1 || s.Violations != 1 {
		t.Fatalf("a revoked version served past the bound: %d revoked violations of %d (%v), want 1", s.ByKind[KindRevoked], s.Violations, s.Listed)
	}
}
