package publisher_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// hookedStore is a real store whose ReadLog runs a hook (once) after it
// has read: a write that lands between a snapshot pass's log read and its
// record reads.
type hookedStore struct {
	origin.Store
	origin.SnapshotParts
	mu    sync.Mutex
	after func()
}

func (h *hookedStore) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	cs, err := h.Store.ReadLog(ctx, after, limit)
	h.mu.Lock()
	f := h.after
	h.after = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return cs, err
}

// Resolve the methods both embedded interfaces name.
func (h *hookedStore) PutSnapshot(ctx context.Context, s record.Snapshot) error {
	return h.Store.PutSnapshot(ctx, s)
}

func (h *hookedStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	return h.Store.GetSnapshot(ctx, ns)
}

// verifyStoredSnapshot reads ns's snapshot and its proof back and
// verifies them as a node does; it returns the snapshot.
func verifyStoredSnapshot(t *testing.T, store origin.Store, keys *sign.Verifier, ns, what string) record.Snapshot {
	t.Helper()
	ctx := testCtx(t)
	snap, err := store.GetSnapshot(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := checkpoint.GetProof(ctx, store.(origin.SnapshotParts), ns, snap.Version)
	if err != nil {
		t.Fatalf("%s: the snapshot at %s has no proof: %v", what, snap.Version, err)
	}
	v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second}
	if err := v.VerifySnapshot(snap, proof, nil); err != nil {
		t.Fatalf("%s: the publisher's snapshot does not verify against its own proof: %v", what, err)
	}
	return snap
}

// TestSnapshotProvesOnlyWhatTheLogNames: the store can hold a version of
// a key the change log never named (a write whose log append failed, left
// for Repair; a late write landing between a snapshot pass's log read and
// its record reads), while the snapshot's proof is built from the log.
// Every snapshot the publisher writes must still verify against its own
// proof (a node refuses one that does not whole, and cannot warm from it
// until the next): such a record is carried above the snapshot's version,
// with the state the log gives its key at that version, and stays so in
// later passes until the log names it. On a directory, versitygw and
// dynalite.
func TestSnapshotProvesOnlyWhatTheLogNames(t *testing.T) {
	for name, base := range realStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			signer, keys := signingKeys(t)
			store := &hookedStore{Store: base, SnapshotParts: base.(origin.SnapshotParts)}
			// Versions a minute old: every logged write is settled at once.
			e := newEnv(t, store, checkpointConfig(signer, time.Minute))
			p := e.pub
			clock := record.NewClock(func() time.Time { return time.Now().Add(-time.Minute) })
			for _, k := range []string{"a", "b", "c"} {
				if _, err := p.Put(ctx, "keys", k, []byte("one")); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			verifyStoredSnapshot(t, store, keys, "keys", "first snapshot")

			// A write of a whose log append never happened (the process
			// died after its compare-and-swap), then a logged write of b
			// above it: the log's newest version is above a's stored one.
			a2, err := p.Put(ctx, "keys", "a", []byte("two"))
			if err != nil {
				t.Fatal(err)
			}
			clock.Observe(a2.Version)
			unlogged := signer.Sign(record.Record{Namespace: "keys", Key: "a", Value: []byte("unlogged"), Version: clock.Now()})
			if err := base.CompareAndSwap(ctx, unlogged, a2.Version); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // the clocks' next version is above it
			b2, err := p.Put(ctx, "keys", "b", []byte("two"))
			if err != nil {
				t.Fatal(err)
			}
			if b2.Version <= unlogged.Version {
				t.Fatalf("b's version %s is not above the unlogged write %s (the test needs it)", b2.Version, unlogged.Version)
			}
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			snap := verifyStoredSnapshot(t, store, keys, "keys", "an unlogged write in the store")
			if snap.Version >= unlogged.Version {
				t.Fatalf("the snapshot's version %s covers %s, a version the log never named", snap.Version, unlogged.Version)
			}
			// A pass with nothing new in the log must not cover it either.
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			verifyStoredSnapshot(t, store, keys, "keys", "the next pass, the log unchanged")

			// A write that lands (record and log entry) after a pass read
			// the log, with a version below the log's newest: a write
			// whose request outlived its budget.
			c2, err := p.Put(ctx, "keys", "c", []byte("two"))
			if err != nil {
				t.Fatal(err)
			}
			late := signer.Sign(record.Record{Namespace: "keys", Key: "c", Value: []byte("late"), Version: clock.Now()})
			time.Sleep(time.Millisecond)
			if _, err := p.Put(ctx, "keys", "d", []byte("one")); err != nil {
				t.Fatal(err)
			}
			store.mu.Lock()
			store.after = func() {
				if err := base.CompareAndSwap(ctx, late, c2.Version); err != nil {
					t.Error(err)
				}
				if err := base.AppendLog(ctx, late.Change()); err != nil {
					t.Error(err)
				}
			}
			store.mu.Unlock()
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			verifyStoredSnapshot(t, store, keys, "keys", "a write landing after the log read")

			// Once the log names everything, the snapshot covers it all.
			a3, err := p.Put(ctx, "keys", "a", []byte("three"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			snap = verifyStoredSnapshot(t, store, keys, "keys", "after a logged rewrite")
			if snap.Version < a3.Version {
				t.Fatalf("the snapshot's version %s is still below %s, logged", snap.Version, a3.Version)
			}
			if n := e.metric(t, "dataplane_publisher_snapshot_proofs_skipped_total"); n != 0 {
				t.Fatalf("%v snapshots written without a proof", n)
			}
		})
	}
}

// TestForgedLogEntryDoesNotHoldSnapshotBack: a bucket writer appends an
// unsigned log entry naming a key at a version the store does not hold
// (or does not hold at all). The snapshot leaves the entry out, as the
// issuer does, and its version still moves past it, with a proof that
// verifies.
func TestForgedLogEntryDoesNotHoldSnapshotBack(t *testing.T) {
	ctx := testCtx(t)
	signer, keys := signingKeys(t)
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store, checkpointConfig(signer, time.Minute))
	a, err := e.pub.Put(ctx, "keys", "a", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	forged := []record.Change{
		{Namespace: "keys", Key: "a", Version: a.Version + 1<<16},
		{Namespace: "keys", Key: "ghost", Version: a.Version + 2<<16},
	}
	for _, c := range forged {
		if err := store.AppendLog(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond) // the next write's version is above the forged ones
	b, err := e.pub.Put(ctx, "keys", "b", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	if b.Version <= forged[1].Version {
		t.Fatalf("b at %s is not above the forged entries (the test needs it)", b.Version)
	}
	if _, err := e.pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	snap := verifyStoredSnapshot(t, store, keys, "keys", "forged log entries")
	if snap.Version < b.Version {
		t.Fatalf("the snapshot's version %s stays below %s: held back by the forged entries", snap.Version, b.Version)
	}
}
