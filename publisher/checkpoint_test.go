package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// realStores opens a fresh directory, S3-compatible (versitygw) and
// DynamoDB-compatible (dynalite) store.
func realStores(t *testing.T) map[string]origin.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ds, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s3srv := testserver.StartS3(t)
	s3s, err := s3.New(ctx, s3.Config{
		Bucket: "ckpt", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint: s3srv.Endpoint, Region: s3srv.Region, AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3s.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	dsrv := testserver.StartDynamo(t)
	dyn, err := dynamodb.New(ctx, dynamodb.Config{
		Table: "ckpt",
		Conn:  awsconn.Conn{Endpoint: dsrv.Endpoint, Region: dsrv.Region, AccessKey: dsrv.AccessKey, SecretKey: dsrv.SecretKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dyn.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	return map[string]origin.Store{"dir": ds, "s3": s3s, "dynamodb": dyn}
}

func signingKeys(t *testing.T) (*sign.Signer, *sign.Verifier) {
	t.Helper()
	pub, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := sign.NewSigner(priv)
	v, _ := sign.NewVerifier(pub)
	return s, v
}

// checkpointConfig issues checkpoints with a signer, its clock behind by
// lag so that what it writes is already settled.
func checkpointConfig(s *sign.Signer, lag time.Duration) func(*publisher.Config) {
	return func(c *publisher.Config) {
		c.Signer = s
		c.Clock = record.NewClock(func() time.Time { return time.Now().Add(-lag) })
		publisher.SkipClockCheck(c) // the clock lags on purpose
		c.Timing.LogRetention, c.Timing.LogTailTTL, c.TombstoneHorizon = 0, 0, 0
		c.Timing.PublishBudget, c.Timing.ClockSkew, c.Timing.LogSettle = time.Second, 100*time.Millisecond, 1200*time.Millisecond
		c.Timing.CheckpointLifetime, c.IssueCheckpoints = time.Minute, true // every second while changing
	}
}

// groundTruth hashes the stored record of every key (a full read of the
// namespace, key by key).
func groundTruth(t *testing.T, s origin.Store, ns string, keys []string) (statehash.Hash, uint64) {
	t.Helper()
	var h statehash.Hash
	var n uint64
	for _, r := range state(t, s, ns, keys...) {
		h.Add(statehash.ElementOf(r))
		n++
	}
	return h, n
}

// TestCheckpointsOnRealStores: against each real store, the publisher's
// snapshot proof and latest checkpoint read back verify, their hash is
// the hash of a full read of the namespace, and a bucket writer without
// the key who leaves a signed key out of the snapshot, or changes the
// checkpoint, is caught.
func TestCheckpointsOnRealStores(t *testing.T) {
	for name, store := range realStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			signer, keys := signingKeys(t)
			// Versions a minute old: every write is settled at once.
			e := newEnv(t, store, checkpointConfig(signer, time.Minute))
			p := e.pub
			var names []string
			for i := range 30 {
				k := fmt.Sprintf("k%02d", i)
				names = append(names, k)
				if _, err := p.Put(ctx, "keys", k, []byte(fmt.Sprint("value ", i))); err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range names[:5] {
				if _, err := p.Delete(ctx, "keys", k); err != nil {
					t.Fatal(err)
				}
			}
			wantH, wantN := groundTruth(t, store, "keys", names)
			if wantN != 30 {
				t.Fatalf("ground truth has %d keys", wantN)
			}

			// The snapshot and its proof.
			if _, err := p.Snapshot(ctx, "keys"); err != nil {
				t.Fatal(err)
			}
			parts := store.(origin.SnapshotParts)
			snap, err := store.GetSnapshot(ctx, "keys")
			if err != nil {
				t.Fatal(err)
			}
			proof, err := checkpoint.GetProof(ctx, parts, "keys", snap.Version)
			if err != nil {
				t.Fatalf("the snapshot at %s has no proof: %v", snap.Version, err)
			}
			v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second}
			if err := v.VerifySnapshot(snap, proof, nil); err != nil {
				t.Fatalf("the snapshot does not verify against its proof: %v", err)
			}
			if err := checkpoint.Match(proof.Checkpoint, &wantH, wantN); err != nil {
				t.Fatalf("the proof's checkpoint is not the full read's state: %v", err)
			}

			// The latest checkpoint.
			issued, err := p.IssueCheckpoints(ctx, time.Now())
			if err != nil || len(issued) != 1 {
				t.Fatalf("IssueCheckpoints = %d checkpoints, %v; want 1", len(issued), err)
			}
			latest, err := checkpoint.GetLatest(ctx, parts, "keys")
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(latest, proof.Checkpoint); err != nil {
				t.Fatalf("the stored checkpoint does not verify: %v", err)
			}
			if err := checkpoint.Match(latest, &wantH, wantN); err != nil {
				t.Fatalf("the stored checkpoint is not the full read's state: %v", err)
			}

			// A bucket writer without the key leaves a signed key out.
			tampered := snap
			tampered.Records = append([]record.Record(nil), snap.Records[:10]...)
			tampered.Records = append(tampered.Records, snap.Records[11:]...)
			if err := origin.WriteSnapshot(ctx, parts, tampered, origin.Layout{}); err != nil {
				t.Fatal(err)
			}
			back, err := store.GetSnapshot(ctx, "keys")
			if err != nil {
				t.Fatal(err)
			}
			if err := v.VerifySnapshot(back, proof, nil); !errors.Is(err, checkpoint.ErrMismatch) {
				t.Fatalf("a snapshot with a signed key left out: err = %v, want ErrMismatch", err)
			}
			// ...or changes the stored checkpoint's count.
			raw, err := latest.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-72-statehash.RawSize-1]++ // the low byte of expires-at
			if err := parts.PutSnapshotPart(ctx, "keys", checkpoint.LatestName, raw); err != nil {
				t.Fatal(err)
			}
			forged, err := checkpoint.GetLatest(ctx, parts, "keys")
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(forged, nil); !errors.Is(err, sign.ErrBadSignature) {
				t.Fatalf("a changed checkpoint: err = %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestSnapshotProofAboveVersion: records written after a snapshot's
// version (ahead of the wall clock, which the snapshot trails by the
// snapshot lag) land in the snapshot above its version; the proof carries
// their states at the version, the snapshot verifies, and a publisher
// restarted on the same origin rebuilds the same state from the snapshot
// and its proof.
func TestSnapshotProofAboveVersion(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		signer, keys := signingKeys(t)
		store := b.open(t)
		old := newEnv(t, store, checkpointConfig(signer, time.Minute))
		var names []string
		for i := range 20 {
			k := fmt.Sprintf("k%02d", i)
			names = append(names, k)
			if _, err := old.pub.Put(ctx, "keys", k, []byte("old")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := old.pub.Snapshot(ctx, "keys"); err != nil {
			t.Fatal(err)
		}
		oldH, oldN := groundTruth(t, store, "keys", names)
		// Versions 30 s ahead of the wall clock: above the next snapshot's
		// version (which trails the clock by the snapshot lag) however
		// slowly the test runs.
		e := newEnv(t, store, checkpointConfig(signer, -30*time.Second))
		if _, err := e.pub.Put(ctx, "keys", "k03", []byte("new")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Put(ctx, "keys", "brand-new", []byte("new")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Delete(ctx, "keys", "k04"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Snapshot(ctx, "keys"); err != nil {
			t.Fatal(err)
		}
		parts := store.(origin.SnapshotParts)
		snap, err := store.GetSnapshot(ctx, "keys")
		if err != nil {
			t.Fatal(err)
		}
		above := 0
		for _, r := range snap.Records {
			if r.Version > snap.Version {
				above++
			}
		}
		if above != 3 {
			t.Fatalf("%d records above the snapshot's version, want 3 (the test needs them)", above)
		}
		proof, err := checkpoint.GetProof(ctx, parts, "keys", snap.Version)
		if err != nil {
			t.Fatal(err)
		}
		v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second}
		if err := v.VerifySnapshot(snap, proof, nil); err != nil {
			t.Fatalf("the snapshot with records above its version does not verify: %v", err)
		}
		if len(proof.Above) != 3 {
			t.Fatalf("proof carries %d states above its version, want 3", len(proof.Above))
		}
		// The state at the proof's version is the first writer's.
		if err := checkpoint.Match(proof.Checkpoint, &oldH, oldN); err != nil {
			t.Fatalf("the proof is not the state before the new writes: %v", err)
		}
		// A restarted publisher loads the snapshot with its proof and,
		// once the new writes are settled, issues the full read's state.
		re := newEnv(t, b.reopen(t, store), func(c *publisher.Config) {
			checkpointConfig(signer, 0)(c)
			c.Namespaces = []string{"keys"}
		})
		later := time.Now().Add(35 * time.Second) // the new writes are settled then
		issued, err := re.pub.IssueCheckpoints(ctx, later)
		if err != nil || len(issued) != 1 {
			t.Fatalf("IssueCheckpoints = %d, %v; want 1", len(issued), err)
		}
		nowH, nowN := groundTruth(t, store, "keys", append(names, "brand-new"))
		if err := checkpoint.Match(issued[0], &nowH, nowN); err != nil {
			t.Fatalf("the restarted issuer's checkpoint is not the full read's state: %v", err)
		}
	})
}

// TestCheckpointCadence: a checkpoint is issued at once, then not again
// while nothing changes until half its lifetime has passed, and after a
// change once Interval has passed; each names the previous one's version.
func TestCheckpointCadence(t *testing.T) {
	ctx := testCtx(t)
	signer, keys := signingKeys(t)
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Versions and passes run on a made-up clock, so that a write lands
	// between two passes' settled versions however slowly the test runs.
	now := time.Now().Add(-time.Hour)
	var mu sync.Mutex
	writeAt := now.Add(-5 * time.Second)
	e := newEnv(t, store, func(c *publisher.Config) {
		checkpointConfig(signer, 0)(c)
		c.Clock = record.NewClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return writeAt })
	})
	p := e.pub
	if _, err := p.Put(ctx, "keys", "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	issue := func(at time.Time) []*checkpoint.Checkpoint {
		t.Helper()
		out, err := p.IssueCheckpoints(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	first := issue(now)
	if len(first) != 1 {
		t.Fatalf("first pass issued %d checkpoints, want 1", len(first))
	}
	if got := issue(now.Add(500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("issued %d checkpoints with nothing changed", len(got))
	}
	mu.Lock()
	writeAt = now.Add(-500 * time.Millisecond) // above the first pass's settled version, below the next
	mu.Unlock()
	if _, err := p.Put(ctx, "keys", "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := issue(now.Add(900 * time.Millisecond)); len(got) != 0 {
		t.Fatal("issued again within Interval")
	}
	second := issue(now.Add(1100 * time.Millisecond))
	if len(second) != 1 || second[0].Prev != first[0].Version || second[0].Version <= first[0].Version {
		t.Fatalf("after a change: %v (prev must be the first's version)", second)
	}
	if got := issue(now.Add(29 * time.Second)); len(got) != 0 {
		t.Fatal("issued again before half the lifetime with nothing changed")
	}
	third := issue(now.Add(31200 * time.Millisecond))
	if len(third) != 1 {
		t.Fatal("not renewed after half its lifetime")
	}
	v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second, Now: func() time.Time { return now.Add(32 * time.Second) }}
	if err := v.Verify(third[0], second[0]); err != nil {
		t.Fatalf("renewed checkpoint refused: %v", err)
	}
	if err := v.Verify(second[0], third[0]); !errors.Is(err, checkpoint.ErrRollback) {
		t.Fatalf("the older checkpoint after the renewed one: err = %v, want ErrRollback", err)
	}
	if e.metric(t, "dataplane_publisher_checkpoints_issued_total") != 3 {
		t.Fatalf("checkpoints_issued_total = %v, want 3", e.metric(t, "dataplane_publisher_checkpoints_issued_total"))
	}
}

// TestCheckpointConfig: checkpoints need a signer and a lifetime.
func TestCheckpointConfig(t *testing.T) {
	store, _ := dir.Open(t.TempDir())
	for name, c := range map[string]struct {
		signed   bool
		lifetime time.Duration
		want     string
	}{
		"no signer":   {false, time.Minute, "IssueCheckpoints needs a Signer"},
		"no lifetime": {true, 0, "IssueCheckpoints needs a positive Timing.CheckpointLifetime, got 0s"},
		"negative":    {true, -time.Second, "CheckpointLifetime=-1s must not be negative"},
	} {
		cfg := publisher.DefaultConfig()
		cfg.IssueCheckpoints, cfg.Timing.CheckpointLifetime = true, c.lifetime
		if c.signed {
			s, _ := signingKeys(t)
			cfg.Signer = s
		}
		if _, err := publisher.New(store, cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %v, want one naming %q", name, err, c.want)
		}
	}
	p, _ := publisher.New(store, publisher.DefaultConfig())
	if err := p.RunCheckpoints(context.Background()); !errors.Is(err, publisher.ErrNoCheckpoints) {
		t.Errorf("RunCheckpoints without checkpoints: err = %v", err)
	}
}

// TestCheckpointInterval: a changing namespace is checkpointed every
// LogInterval, at most every second, and at least four times a lifetime.
func TestCheckpointInterval(t *testing.T) {
	for _, c := range []struct {
		name                     string
		interval, lifetime, want time.Duration
	}{
		{"default", 5 * time.Second, 5 * time.Minute, time.Second},
		{"local", time.Second, 5 * time.Minute, time.Second},
		{"log read often", 200 * time.Millisecond, time.Minute, 200 * time.Millisecond},
		{"short lifetime", 5 * time.Second, 2 * time.Second, 500 * time.Millisecond},
		{"no log interval (a publisher's own timing)", 0, time.Minute, time.Second},
	} {
		tm := origin.DefaultTiming()
		tm.LogInterval, tm.CheckpointLifetime = c.interval, c.lifetime
		if got := publisher.CheckpointInterval(tm); got != c.want {
			t.Errorf("%s: checkpoint interval %v, want %v", c.name, got, c.want)
		}
	}
}

// TestCheckpointUnsignedChanges: changes written by a publisher without
// the key carry no seal. Verifying nodes refuse them, so the issuer leaves
// them out of the state it signs (counting them, it would sign a state no
// node can match): its checkpoint is the state without them.
func TestCheckpointUnsignedChanges(t *testing.T) {
	ctx := testCtx(t)
	signer, _ := signingKeys(t)
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	var mu sync.Mutex
	writeAt := now.Add(-10 * time.Second)
	clock := record.NewClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return writeAt })
	unsigned := newEnv(t, store, func(c *publisher.Config) { c.Clock = clock; publisher.SkipClockCheck(c) })
	issuer := newEnv(t, store, func(c *publisher.Config) {
		checkpointConfig(signer, 0)(c)
		c.Clock = clock
		c.Namespaces = []string{"keys"}
	})
	put := func(at time.Duration, value string) record.Record {
		t.Helper()
		mu.Lock()
		writeAt = now.Add(at)
		mu.Unlock()
		r, err := unsigned.pub.Put(ctx, "keys", "k", []byte(value))
		if err != nil {
			t.Fatal(err)
		}
		if r.Seal != nil {
			t.Fatal("the unsigned publisher signed")
		}
		return r
	}
	put(-10*time.Second, "one")
	put(-5*time.Second, "two")
	got, err := issuer.pub.IssueCheckpoints(ctx, now.Add(-4*time.Second+1200*time.Millisecond))
	if err != nil || len(got) != 1 {
		t.Fatalf("issued %d checkpoints once the changes settled (err %v), want 1", len(got), err)
	}
	if got[0].Count != 0 {
		t.Fatalf("the checkpoint counts %d elements: it took unsigned changes a verifying node refuses", got[0].Count)
	}
}

// TestRunIssuesWhileWriting: Run snapshots and issues checkpoints while
// writes go on; afterwards the latest checkpoint is the origin's state
// and the current snapshot verifies against its proof.
func TestRunIssuesWhileWriting(t *testing.T) {
	ctx := testCtx(t)
	signer, keys := signingKeys(t)
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, store, func(c *publisher.Config) {
		checkpointConfig(signer, 0)(c)
		c.SnapshotInterval = 20 * time.Millisecond
		c.Timing.LogInterval = 50 * time.Millisecond // the issuer's interval
		c.Namespaces = []string{"keys"}
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.pub.Run(runCtx) }()
	var names []string
	for i := range 60 {
		k := fmt.Sprintf("k%02d", i%40)
		if i < 40 {
			names = append(names, k)
		}
		var err error
		if i%7 == 6 {
			_, err = e.pub.Delete(ctx, "keys", k)
		} else {
			_, err = e.pub.Put(ctx, "keys", k, []byte(fmt.Sprint("v", i)))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want, wantN := groundTruth(t, store, "keys", names)
	v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second}
	var parts origin.SnapshotParts = store
	for {
		c, err := checkpoint.GetLatest(ctx, parts, "keys")
		if err == nil {
			if err := v.Verify(c, nil); err != nil {
				t.Fatalf("stored checkpoint refused: %v", err)
			}
			if checkpoint.Match(c, &want, wantN) == nil {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no checkpoint of the written state before the deadline (last %v, %v)", c, err)
		}
		time.Sleep(20 * time.Millisecond) // polled: Run issues on its own ticker
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	snap, err := store.GetSnapshot(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	proof, err := checkpoint.GetProof(ctx, parts, "keys", snap.Version)
	if err != nil {
		t.Fatalf("the current snapshot at %s has no proof: %v", snap.Version, err)
	}
	if err := v.VerifySnapshot(snap, proof, nil); err != nil {
		t.Fatalf("the current snapshot does not verify: %v", err)
	}
}
