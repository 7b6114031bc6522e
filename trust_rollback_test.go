package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// signedCheckpoint is a checkpoint of keys at v over recs, signed by s.
func signedCheckpoint(t *testing.T, s *sign.Signer, v record.Version, issued time.Time, recs ...record.Record) *checkpoint.Checkpoint {
	t.Helper()
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: v, IssuedAt: issued, ExpiresAt: issued.Add(time.Minute)}
	for _, r := range recs {
		c.Hash.Add(statehash.ElementOf(r))
		c.Count++
	}
	if err := c.Sign(s); err != nil {
		t.Fatal(err)
	}
	return c
}

func marshal(t *testing.T, c *checkpoint.Checkpoint) []byte {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckpointRollbackAndRefusals: offerCheckpoint (the gossip seam)
// matches a verified checkpoint, refuses one older than the last verified
// (rollback), and refuses unsigned, untrusted, tampered and corrupt ones,
// each counted by reason.
func TestCheckpointRollbackAndRefusals(t *testing.T) {
	store := newStore(t) // no snapshot of keys: the node's state is empty
	signer, stranger := newSigner(t), newSigner(t)
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), Logger: quiet(), Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	now := time.Now()
	v1, v2 := record.MakeVersion(now.Add(-3*time.Second), 0), record.MakeVersion(now.Add(-2*time.Second), 0)
	if err := dataplane.OfferCheckpoint(n, marshal(t, signedCheckpoint(t, signer, v2, now))); err != nil {
		t.Fatalf("a checkpoint of the empty namespace: %v", err)
	}
	if c := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); c != 1 {
		t.Fatalf("%v matches, want 1", c)
	}
	older := signedCheckpoint(t, signer, v1, now)
	if err := dataplane.OfferCheckpoint(n, marshal(t, older)); !errors.Is(err, checkpoint.ErrRollback) {
		t.Fatalf("an older checkpoint: %v, want rollback", err)
	}
	unsigned := &checkpoint.Checkpoint{Namespace: "keys", Version: v2, IssuedAt: now.Add(time.Millisecond), ExpiresAt: now.Add(time.Minute)}
	if err := dataplane.OfferCheckpoint(n, marshal(t, unsigned)); !errors.Is(err, sign.ErrUnsigned) {
		t.Fatalf("an unsigned checkpoint: %v", err)
	}
	if err := dataplane.OfferCheckpoint(n, marshal(t, signedCheckpoint(t, stranger, v2, now.Add(time.Millisecond)))); !errors.Is(err, sign.ErrUntrustedKey) {
		t.Fatalf("a stranger's checkpoint: %v", err)
	}
	tampered := signedCheckpoint(t, signer, v2, now.Add(time.Millisecond))
	tampered.Count++
	if err := dataplane.OfferCheckpoint(n, marshal(t, tampered)); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("a tampered checkpoint: %v", err)
	}
	if err := dataplane.OfferCheckpoint(n, []byte("DK\x01\x00garbage")); !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("garbage: %v", err)
	}
	for _, reason := range []string{"rollback", "unsigned", "untrusted_key", "bad_signature", "corrupt"} {
		if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", reason); c != 1 {
			t.Errorf("refusals %s = %v, want 1", reason, c)
		}
	}
	// A checkpoint the node's state does not match (a key it lacks) is
	// verified, not refused, and proves nothing.
	missing := signer.Sign(record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: v1})
	if err := dataplane.OfferCheckpoint(n, marshal(t, signedCheckpoint(t, signer, v2, now.Add(2*time.Millisecond), missing))); err != nil {
		t.Fatalf("a checkpoint the node does not match: %v", err)
	}
	if c := counter(t, reg, "dataplane_node_checkpoint_matches_total", ""); c != 1 {
		t.Fatalf("%v matches after a mismatch, want still 1", c)
	}
}

// TestLocalFileRollback: a node whose kept checkpoint is newer than its
// local snapshot file (an older file put back) refuses the file at
// warm-up; a file at or above it loads, and the log is resumed from the
// kept checkpoint's version, not from the file's cursor.
func TestLocalFileRollback(t *testing.T) {
	signer := newSigner(t)
	now := time.Now()
	vFile, vCkpt, vCursor := record.MakeVersion(now.Add(-5*time.Second), 0), record.MakeVersion(now.Add(-4*time.Second), 0), record.MakeVersion(now.Add(-time.Second), 0)
	r := signer.Sign(record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: vFile})
	for _, tc := range []struct {
		name      string
		fileAt    record.Version
		wantReady bool
	}{
		{"file older than the kept checkpoint", vFile, false},
		{"file newer", vCursor, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			snap, err := record.MarshalSnapshot(record.Snapshot{Namespace: "keys", Version: tc.fileAt, Records: []record.Record{r}})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dataDir, "keys.snapshot"), snap, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dataDir, "keys.checkpoint"), marshal(t, signedCheckpoint(t, signer, vCkpt, now, r)), 0o644); err != nil {
				t.Fatal(err)
			}
			store := newStore(t)
			store.down.Store(true)
			reg := prometheus.NewRegistry()
			n, err := dataplane.Open(context.Background(), dataplane.Config{
				Origin: store, Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), DataDir: dataDir,
				WarmTimeout: 200 * time.Millisecond, Logger: quiet(), Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.Ready() != tc.wantReady {
				t.Fatalf("Ready = %v, want %v", n.Ready(), tc.wantReady)
			}
			if !tc.wantReady {
				if c := counterSum(t, reg, "dataplane_node_checkpoint_refusals_total", "rollback"); c != 1 {
					t.Fatalf("rollback refusals %v, want 1", c)
				}
				return
			}
			if got := n.LogCursor(); got != vCkpt {
				t.Fatalf("log resumed from %s, want the kept checkpoint's %s (the file claims %s)", got, vCkpt, tc.fileAt)
			}
			// Enforced from the start (the kept checkpoint), and not
			// matched yet: keys fails closed until a checkpoint matches.
			if _, err := n.Get(context.Background(), "keys", "k"); !errors.Is(err, dataplane.ErrUnavailable) {
				t.Fatalf("before any match: %v, want unavailable", err)
			}
		})
	}
}

// TestCheckpointOfUntrackedNamespace: gossip relays a checkpoint on only if
// offerCheckpoint accepts it, so a node that does not match a namespace
// (held in part here) must still accept a valid checkpoint of it, for the
// members that do, and refuse a forged one; a node without trusted keys
// cannot tell and accepts it.
func TestCheckpointOfUntrackedNamespace(t *testing.T) {
	signer, stranger := newSigner(t), newSigner(t)
	verifying, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: newStore(t), Namespaces: []string{"routes"}, Verifier: verifierOf(t, signer), Logger: quiet(), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer verifying.Close()
	plain, err := dataplane.Open(context.Background(), dataplane.Config{Origin: newStore(t), Logger: quiet(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	now := time.Now()
	v := record.MakeVersion(now.Add(-time.Second), 0)
	good, forged := marshal(t, signedCheckpoint(t, signer, v, now)), marshal(t, signedCheckpoint(t, stranger, v, now))
	if err := dataplane.OfferCheckpoint(verifying, good); err != nil {
		t.Errorf("verifying node, valid checkpoint of a namespace it holds in part: %v; want accepted (relayed on)", err)
	}
	if err := dataplane.OfferCheckpoint(verifying, forged); !errors.Is(err, sign.ErrUntrustedKey) {
		t.Errorf("verifying node, forged checkpoint of a namespace it holds in part: %v; want ErrUntrustedKey", err)
	}
	for _, raw := range [][]byte{good, forged} {
		if err := dataplane.OfferCheckpoint(plain, raw); err != nil {
			t.Errorf("node without trusted keys: %v; want accepted (it cannot tell)", err)
		}
	}
}

// TestRequireCheckpointsRefusesUnprovenOrigin: a bucket writer deletes the
// publisher's checkpoint and snapshot proof and leaves a snapshot without
// a key. A new node (no checkpoint verified yet) without RequireCheckpoints
// takes the snapshot under the older rules and answers "not found" for the
// key: the hole README's security section names. With RequireCheckpoints it
// refuses the unproven snapshot (counted as no_proof) and never answers
// from it.
func TestRequireCheckpointsRefusesUnprovenOrigin(t *testing.T) {
	store, raw := newPartsStore(t)
	signer := newSigner(t)
	// A signing publisher whose checkpoint loop is not running (it is
	// down, or its checkpoints were deleted since): a running one would
	// store a new latest checkpoint within its interval.
	cfg := publisher.DefaultConfig()
	cfg.Signer, cfg.Logger, cfg.Schemas = signer, quiet(), schema.NewRegistry()
	pub, err := publisher.New(raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := pub.Put(ctx, "keys", "kept", []byte("allow")); err != nil {
		t.Fatal(err)
	}
	// The writer's snapshot: signed records of the publisher, "kept" left
	// out, and no proof or checkpoint beside it.
	other, err := pub.Put(ctx, "keys", "other", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	snap := record.Snapshot{Namespace: "keys", Version: other.Version, Records: []record.Record{other}}
	if err := raw.PutSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := raw.TrimLog(ctx, other.Version); err != nil {
		t.Fatal(err)
	}
	_ = raw.DeleteSnapshotPart(ctx, "keys", "checkpoint")
	_ = checkpoint.DeleteProof(ctx, raw, "keys", other.Version)
	for _, require := range []bool{false, true} {
		t.Run(fmt.Sprint("RequireCheckpoints=", require), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			g := gossip.DefaultLocalConfig() // with gossip a namespace loaded whole answers misses itself
			g.Insecure, g.Name = true, "n"
			n, err := dataplane.Open(ctx, dataplane.Config{
				Origin: store, Gossip: &g.Cluster, Namespaces: []string{"keys"}, Verifier: verifierOf(t, signer), RequireCheckpoints: require,
				WarmTimeout: time.Second, Logger: quiet(), Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if !require {
				// The namespace is marked complete just after the
				// warm-up, not by Open: a Get before that reads the origin.
				eventually(t, testscale.Duration(10*time.Second), "keys complete", func() bool { return n.Complete("keys") })
			}
			_, err = n.Get(ctx, "keys", "kept")
			refused := counter(t, reg, "dataplane_node_checkpoint_refusals_total", "no_proof")
			if !require {
				if !errors.Is(err, dataplane.ErrNotFound) {
					t.Fatalf("without RequireCheckpoints: %v; the test expects the older rules to take the writer's snapshot", err)
				}
				return
			}
			if errors.Is(err, dataplane.ErrNotFound) || refused < 1 {
				t.Fatalf("with RequireCheckpoints: Get(kept) = %v, no_proof refusals %v; want the unproven snapshot refused, never not-found", err, refused)
			}
		})
	}
}
