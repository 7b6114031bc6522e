package dataplane_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// logOutage is an outage whose change log alone can be cut.
type logOutage struct {
	*outage
	logDown atomic.Bool
}

func (o *logOutage) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if o.logDown.Load() {
		return nil, o.err()
	}
	return o.outage.ReadLog(ctx, after, limit)
}

// soloGossip is a one-node gossip config.
func soloGossip(name string) *gossip.Cluster {
	g := gossip.DefaultLocalConfig().Cluster
	g.Insecure = true // plaintext on loopback, on purpose
	g.Name, g.Region = name, "local"
	return &g
}

// oftenTiming reads the log every 50 ms. Its LogSettle must cover these
// tests' own publishes (version taken, then record and log entry written):
// under -race on a loaded machine that took more than 20 ms, the cursor
// passed the entry before it was appended, and the change was never read
// (TestStrangersCostNoOriginReads failed so). A longer Settle only rereads
// more of the log; it does not delay delivery. The other constants are
// origin.LocalTiming's, whose publish budget it covers.
func oftenTiming() origin.Timing {
	return followTiming(50*time.Millisecond, testscale.Duration(time.Second))
}

// followTiming is origin.LocalTiming with the node reading the log every
// interval and settling settle behind it; settle must cover the
// publishers' budget and skew, so they are shrunk to fit a short one. It
// states no CheckpointLifetime: the tests whose publishers issue
// checkpoints write while they check (see revocationTiming).
func followTiming(interval, settle time.Duration) origin.Timing {
	t := origin.LocalTiming()
	t.LogInterval, t.LogSettle, t.CheckpointLifetime = interval, settle, 0
	if need := t.PublishBudget + t.ClockSkew + t.LogTailTTL; settle < need {
		t.PublishBudget, t.ClockSkew, t.LogTailTTL = settle, 0, 0
	}
	return t
}

func publishAt(t *testing.T, s origin.Store, ns, key, val string, v record.Version) record.Record {
	t.Helper()
	r := record.Record{Namespace: ns, Key: key, Value: []byte(val), Version: v, Tombstone: val == ""}
	if _, err := origin.Publish(context.Background(), s, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStrangersCostNoOriginReads: once a node's complete namespaces have
// caught up with the log, 10,000 random hosts and 10,000 random API keys
// make no origin read; a key created later is still found (the log names
// it).
func TestStrangersCostNoOriginReads(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	known := put(t, s, clock, "routes", "known.example.com", `{"upstreams":["http://127.0.0.1:1"]}`)
	if err := s.PutSnapshot(context.Background(), record.Snapshot{Namespace: "routes", Version: known.Version, Records: []record.Record{known}}); err != nil {
		t.Fatal(err)
	}
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Gossip: soloGossip("solo"), Timing: oftenTiming(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	eventually(t, 10*time.Second, "routes and keys complete", func() bool {
		return n.Complete("routes") && n.Complete("keys")
	})
	before := s.reads.Load()
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	for range 10_000 {
		host := fmt.Sprintf("%x.example.com", rng.Uint64())
		if _, err := n.Get(ctx, "routes", host); !errors.Is(err, dataplane.ErrNotFound) {
			t.Fatalf("random host %s: %v", host, err)
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "sk_%x", rng.Uint64()))
		k := "default/" + hex.EncodeToString(sum[:])
		if _, err := n.Get(ctx, "keys", k); !errors.Is(err, dataplane.ErrNotFound) {
			t.Fatalf("random key: %v", err)
		}
	}
	if d := s.reads.Load() - before; d != 0 {
		t.Fatalf("20,000 strangers made %d origin reads, want 0", d)
	}
	if v, err := n.Get(ctx, "routes", "known.example.com"); err != nil || v.Version != known.Version {
		t.Fatalf("known route: %+v, %v", v, err)
	}
	later := put(t, s, clock, "routes", "later.example.com", `{"upstreams":["http://127.0.0.1:2"]}`)
	eventually(t, 30*time.Second, "the new route to be found through the log", func() bool {
		v, err := n.Get(ctx, "routes", "later.example.com")
		return err == nil && v.Version == later.Version
	})
}

// TestRestartFromLocalFileResumesTheLog: a node that ran for an hour with
// entries well past their fresh window writes a local file whose resume
// point is its log cursor, not its oldest entry; restarted from that file
// while the origin is down, it resumes the log where it was, with no
// "log truncated" and no revalidation, although the log keeps only 30
// minutes.
func TestRestartFromLocalFileResumesTheLog(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	hourAgo := record.MakeVersion(time.Now().Add(-time.Hour), 0)
	old := publishAt(t, s, "routes", "old.example.com", "old", hourAgo)
	if err := s.PutSnapshot(ctx, record.Snapshot{Namespace: "routes", Version: hourAgo, Records: []record.Record{old}}); err != nil {
		t.Fatal(err)
	}
	if err := s.TrimLog(ctx, record.MakeVersion(time.Now().Add(-30*time.Minute), 0)); err != nil {
		t.Fatal(err)
	}
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Millisecond, Stale: 24 * time.Hour} // every entry stale at once
	dataDir := t.TempDir()
	cfg := dataplane.Config{Origin: s, Gossip: soloGossip("a"), Timing: oftenTiming(), DataDir: dataDir, Cache: copts, Logger: quiet()}
	n, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a log catch-up", func() bool {
		return n.LogCursor() > record.MakeVersion(time.Now().Add(-time.Minute), 0)
	})
	time.Sleep(5 * time.Millisecond) // past the fresh window
	if v, err := n.Get(ctx, "routes", "old.example.com"); err != nil || v.Version != hourAgo {
		t.Fatalf("before restart: %+v, %v", v, err)
	}
	if snap := n.Snapshot("routes"); snap.Version < record.MakeVersion(time.Now().Add(-time.Minute), 0) {
		t.Fatalf("the node's snapshot resumes at %s (%v), an hour-old entry dragged it back", snap.Version, snap.Version.Time())
	}
	n.Close()

	s.down.Store(true) // restart from the local file
	reg := prometheus.NewRegistry()
	cfg.Registerer, cfg.Gossip = reg, soloGossip("a2")
	n2, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	s.down.Store(false)
	eventually(t, 10*time.Second, "a successful catch-up", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "ok") >= 1
	})
	if c := counter(t, reg, "dataplane_follow_log_reads_total", "truncated"); c != 0 {
		t.Fatalf("%v catch-ups found the log truncated after a restart from the local file", c)
	}
	if c := counter(t, reg, "dataplane_node_full_revalidations_total", ""); c != 0 {
		t.Fatalf("%v full revalidations after a restart from the local file", c)
	}
}

// TestAbsencePastLogRetentionReloadsSnapshots: a node cut off from the log
// while keys change and are deleted, and the log is trimmed past its
// position, recovers with one snapshot read per namespace and no per-key
// origin read: changed keys serve their new versions, and a key deleted
// (its tombstone already dropped from the snapshot) is gone.
func TestAbsencePastLogRetentionReloadsSnapshots(t *testing.T) {
	o := &logOutage{outage: newStore(t)}
	ctx := context.Background()
	clock := record.NewClock(nil)
	var recs []record.Record
	for i := range 100 {
		recs = append(recs, put(t, o, clock, "routes", fmt.Sprintf("h%03d.example.com", i), "v1"))
	}
	if err := o.PutSnapshot(ctx, record.Snapshot{Namespace: "routes", Version: recs[99].Version, Records: recs}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour} // no TTL to hide a miss
	n, err := dataplane.Open(ctx, dataplane.Config{Origin: o, Gossip: soloGossip("solo"), Timing: oftenTiming(), Cache: copts, Logger: quiet(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	eventually(t, 10*time.Second, "routes complete", func() bool { return n.Complete("routes") })

	o.logDown.Store(true)
	eventually(t, 10*time.Second, "a failed catch-up", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "error") >= 1
	})
	changed := put(t, o, clock, "routes", "h001.example.com", "v2")
	deleted := record.Record{Namespace: "routes", Key: "h002.example.com", Version: clock.Now(), Tombstone: true}
	if _, err := origin.Publish(ctx, o, deleted); err != nil {
		t.Fatal(err)
	}
	// The log is trimmed past the node's position; the publisher's next
	// snapshot is newer than the trim point, and the delete is past the
	// tombstone horizon, so the key is simply absent from it.
	trimAt := clock.Now()
	snap := record.Snapshot{Namespace: "routes", Version: clock.Now()}
	for _, r := range recs {
		switch r.Key {
		case changed.Key:
			r = changed
		case deleted.Key:
			continue
		}
		snap.Records = append(snap.Records, r)
	}
	if err := o.PutSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := o.TrimLog(ctx, trimAt); err != nil {
		t.Fatal(err)
	}
	gets, snaps := o.reads.Load(), o.snaps.Load()
	o.logDown.Store(false)
	eventually(t, 10*time.Second, "recovery from the snapshot", func() bool {
		c, ok := n.Known("routes", deleted.Key)
		return ok && c.Tombstone
	})
	eventually(t, 10*time.Second, "a catch-up after the recovery", func() bool {
		return counter(t, reg, "dataplane_follow_log_reads_total", "ok") >= 2
	})
	if d := o.reads.Load() - gets; d != 0 {
		t.Fatalf("recovery made %d per-key origin reads, want 0", d)
	}
	// routes has a snapshot; keys has none (nothing to read beyond the
	// attempt).
	if d := o.snaps.Load() - snaps; d > 2 {
		t.Fatalf("recovery made %d snapshot reads, want at most one per namespace (2)", d)
	}
	if v, err := n.Get(ctx, "routes", changed.Key); err != nil || v.Version != changed.Version {
		t.Fatalf("changed key after recovery: %+v, %v", v, err)
	}
	if _, err := n.Get(ctx, "routes", deleted.Key); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("deleted key after recovery: %v", err)
	}
	if d := o.reads.Load() - gets; d != 0 {
		t.Fatalf("reads after recovery made %d origin reads, want 0", d)
	}
}
