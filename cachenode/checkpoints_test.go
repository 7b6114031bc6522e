package cachenode_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// partsOrigin is a directory origin whose snapshot-part reads can be cut
// and are counted.
type partsOrigin struct {
	*dir.Store
	down  atomic.Bool
	reads atomic.Int64
}

func (o *partsOrigin) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	o.reads.Add(1)
	if o.down.Load() {
		return nil, origin.ErrUnavailable
	}
	return o.Store.GetSnapshotPart(ctx, ns, name)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newSigner(t *testing.T) *sign.Signer {
	t.Helper()
	_, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ckpt is a checkpoint of ns at v issued at issued, signed by s (nil:
// unsigned).
func ckpt(t *testing.T, s *sign.Signer, ns string, v record.Version, issued time.Time) *checkpoint.Checkpoint {
	t.Helper()
	c := &checkpoint.Checkpoint{Namespace: ns, Version: v, IssuedAt: issued.Truncate(time.Millisecond), ExpiresAt: issued.Add(time.Minute).Truncate(time.Millisecond), Count: uint64(v & 0xff)}
	if s != nil {
		if err := c.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// tierOver serves a cache node over o (edit adjusts its Config) on
// loopback and returns the node and the tier's checkpoint parts.
func tierOver(t *testing.T, o origin.Store, edit func(*cachenode.Config)) (*cachenode.Server, origin.SnapshotParts) {
	t.Helper()
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = o, token, quietLogger()
	if edit != nil {
		edit(&cfg)
	}
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node)
	t.Cleanup(func() { srv.Close(); node.Close() })
	hs, err := httporigin.New(httporigin.Config{Nodes: []string{srv.URL}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return node, hs.CheckpointParts()
}

func newPartsOrigin(t *testing.T) *partsOrigin {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &partsOrigin{Store: d}
}

func sameCheckpoint(t *testing.T, what string, got, want *checkpoint.Checkpoint) {
	t.Helper()
	gb, _ := got.Marshal()
	wb, _ := want.Marshal()
	if string(gb) != string(wb) {
		t.Fatalf("%s: got %s, want %s", what, got, want)
	}
}

// TestCheckpointPartsThroughTier: the tier serves the origin's latest
// checkpoint and snapshot proofs byte for byte through httporigin's
// CheckpointParts; a missing one is not found, a part name that is not a
// checkpoint's is refused, and writes through the view are refused.
func TestCheckpointPartsThroughTier(t *testing.T) {
	ctx := context.Background()
	o := newPartsOrigin(t)
	s := newSigner(t)
	now := time.Now()
	_, parts := tierOver(t, o, nil)

	if _, err := checkpoint.GetLatest(ctx, parts, "keys"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("GetLatest before any checkpoint: %v, want ErrNotFound", err)
	}
	latest := ckpt(t, s, "keys", record.MakeVersion(now.Add(-2*time.Second), 0), now)
	if err := checkpoint.PutLatest(ctx, o, latest); err != nil {
		t.Fatal(err)
	}
	proof := &checkpoint.SnapshotProof{Checkpoint: ckpt(t, s, "keys", record.MakeVersion(now.Add(-5*time.Second), 0), now)}
	if err := checkpoint.PutProof(ctx, o, proof); err != nil {
		t.Fatal(err)
	}
	got, err := checkpoint.GetLatest(ctx, parts, "keys")
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, "latest through the tier", got, latest)
	gp, err := checkpoint.GetProof(ctx, parts, "keys", proof.Checkpoint.Version)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, "proof through the tier", gp.Checkpoint, proof.Checkpoint)
	if _, err := checkpoint.GetProof(ctx, parts, "keys", proof.Checkpoint.Version+1); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("GetProof of a version without one: %v, want ErrNotFound", err)
	}
	if _, err := parts.GetSnapshotPart(ctx, "keys", "1234-abc-0"); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("a snapshot chunk through the tier: %v, want ErrInvalid", err)
	}
	if err := parts.PutSnapshotPart(ctx, "keys", checkpoint.LatestName, []byte("x")); !errors.Is(err, httporigin.ErrReadOnly) {
		t.Fatalf("PutSnapshotPart through the tier: %v, want ErrReadOnly", err)
	}
}

// TestCheckpointNeverOlder: once the node has served a checkpoint, an
// origin that goes back to an older one (a replica behind, a restored
// bucket, a writer's rollback), loses it, or fails does not make it serve
// anything older, even with every request reading the origin
// (CheckpointTTL 0); a newer one replaces it at once.
func TestCheckpointNeverOlder(t *testing.T) {
	ctx := context.Background()
	o := newPartsOrigin(t)
	s := newSigner(t)
	now := time.Now()
	_, parts := tierOver(t, o, func(c *cachenode.Config) { cachenode.SetCheckpointTTL(c, 0) })
	old := ckpt(t, s, "keys", record.MakeVersion(now.Add(-4*time.Second), 0), now.Add(-2*time.Second))
	cur := ckpt(t, s, "keys", record.MakeVersion(now.Add(-2*time.Second), 0), now)
	reissued := ckpt(t, s, "keys", cur.Version, now.Add(time.Second))

	put := func(c *checkpoint.Checkpoint) {
		t.Helper()
		if err := checkpoint.PutLatest(ctx, o, c); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, want *checkpoint.Checkpoint) {
		t.Helper()
		got, err := checkpoint.GetLatest(ctx, parts, "keys")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameCheckpoint(t, what, got, want)
	}
	put(cur)
	expect("current", cur)
	put(old)
	expect("after the origin went back to an older version", cur)
	if err := o.DeleteSnapshotPart(ctx, "keys", checkpoint.LatestName); err != nil {
		t.Fatal(err)
	}
	expect("after the origin lost it", cur)
	o.down.Store(true)
	expect("while the origin is down", cur)
	o.down.Store(false)
	put(reissued)
	expect("the same version issued later", reissued)
	put(cur)
	expect("the same version issued earlier again", reissued)
}

// TestProofNeverOlder: a snapshot proof re-signed at the same version (a
// later checkpoint issued there, or a new key) replaces the held one; an
// earlier one written back does not, even with every request reading the
// origin (ProofTTL 0).
func TestProofNeverOlder(t *testing.T) {
	ctx := context.Background()
	o := newPartsOrigin(t)
	s := newSigner(t)
	now := time.Now()
	_, parts := tierOver(t, o, func(c *cachenode.Config) { cachenode.SetProofTTL(c, 0) })
	v := record.MakeVersion(now.Add(-3*time.Second), 0)
	first := &checkpoint.SnapshotProof{Checkpoint: ckpt(t, s, "keys", v, now.Add(-time.Second))}
	later := &checkpoint.SnapshotProof{Checkpoint: ckpt(t, s, "keys", v, now)}
	for i, tc := range []struct {
		put, want *checkpoint.SnapshotProof
	}{{first, first}, {later, later}, {first, later}} {
		if err := checkpoint.PutProof(ctx, o, tc.put); err != nil {
			t.Fatal(err)
		}
		got, err := checkpoint.GetProof(ctx, parts, "keys", v)
		if err != nil {
			t.Fatal(err)
		}
		sameCheckpoint(t, fmt.Sprint("step ", i), got.Checkpoint, tc.want.Checkpoint)
	}
}

// TestCheckpointReadsShared: the region's readers of a namespace's latest
// checkpoint share origin reads within CheckpointTTL, and concurrent ones
// wait for one read.
func TestCheckpointReadsShared(t *testing.T) {
	ctx := context.Background()
	o := newPartsOrigin(t)
	now := time.Now()
	node, parts := tierOver(t, o, func(c *cachenode.Config) { cachenode.SetCheckpointTTL(c, time.Hour) })
	c := ckpt(t, newSigner(t), "keys", record.MakeVersion(now.Add(-2*time.Second), 0), now)
	if err := checkpoint.PutLatest(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	const readers = 40
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := checkpoint.GetLatest(ctx, parts, "keys"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fromOrigin, shared := node.CheckpointReads()
	if fromOrigin != 1 || o.reads.Load() != 1 || shared != readers-1 {
		t.Fatalf("%d readers: %d origin reads (%d seen by the origin), %d shared; want 1 and %d", readers, fromOrigin, o.reads.Load(), shared, readers-1)
	}
}

// TestCheckpointVerifierOnNode: a node given the trusted keys serves only
// checkpoints they sign: an unsigned or untrusted one in the origin is
// refused (corrupt, never passed on), and a forged newer one does not
// displace the verified one it holds. Without keys, a checkpoint from the
// future is refused all the same.
func TestCheckpointVerifierOnNode(t *testing.T) {
	ctx := context.Background()
	s, stranger := newSigner(t), newSigner(t)
	keys, err := sign.NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v := record.MakeVersion(now.Add(-2*time.Second), 0)

	o := newPartsOrigin(t)
	_, parts := tierOver(t, o, func(c *cachenode.Config) {
		cachenode.SetCheckpointTTL(c, 0)
		c.Verifier = keys
	})
	for _, bad := range []*checkpoint.Checkpoint{ckpt(t, nil, "keys", v, now), ckpt(t, stranger, "keys", v, now)} {
		if err := checkpoint.PutLatest(ctx, o, bad); err != nil {
			t.Fatal(err)
		}
		if got, err := checkpoint.GetLatest(ctx, parts, "keys"); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("origin holds %s: the node answered %v, %v; want it refused as corrupt", bad, got, err)
		}
	}
	good := ckpt(t, s, "keys", v, now)
	if err := checkpoint.PutLatest(ctx, o, good); err != nil {
		t.Fatal(err)
	}
	if got, err := checkpoint.GetLatest(ctx, parts, "keys"); err != nil {
		t.Fatal(err)
	} else {
		sameCheckpoint(t, "trusted", got, good)
	}
	if err := checkpoint.PutLatest(ctx, o, ckpt(t, stranger, "keys", v+1000, now)); err != nil {
		t.Fatal(err)
	}
	if got, err := checkpoint.GetLatest(ctx, parts, "keys"); err != nil {
		t.Fatal(err)
	} else {
		sameCheckpoint(t, "after a forged newer one", got, good)
	}

	o2 := newPartsOrigin(t)
	_, parts2 := tierOver(t, o2, nil)
	future := ckpt(t, s, "keys", record.MakeVersion(now.Add(time.Hour), 0), now)
	if err := checkpoint.PutLatest(ctx, o2, future); err != nil {
		t.Fatal(err)
	}
	if got, err := checkpoint.GetLatest(ctx, parts2, "keys"); !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("a checkpoint an hour ahead: %v, %v; want it refused as corrupt", got, err)
	}
}

// TestSnapshotPartRoutes: the part route answers its protocol's errors.
func TestSnapshotPartRoutes(t *testing.T) {
	o := newPartsOrigin(t)
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = o, token, quietLogger()
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		code         wire.Code
	}{
		{"GET", "/v1/snapshots/keys/checkpoint", 404, wire.CodeNotFound},
		{"GET", "/v1/snapshots/keys/ckpt-0000000000000010", 404, wire.CodeNotFound},
		{"GET", "/v1/snapshots/keys/ckpt-10", 400, wire.CodeInvalid},
		{"GET", "/v1/snapshots/keys/ckpt-000000000000001A", 400, wire.CodeInvalid},
		{"GET", "/v1/snapshots/keys/abc-0", 400, wire.CodeInvalid},
		{"GET", "/v1/snapshots/Keys/checkpoint", 400, wire.CodeInvalid},
		{"PUT", "/v1/snapshots/keys/checkpoint", 405, wire.CodeNoRoute},
	} {
		rec := httptest.NewRecorder()
		node.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, http.NoBody))
		if rec.Code != tc.status || errorCode(t, rec.Body.Bytes()) != tc.code {
			t.Errorf("%s %s: %d %s; want %d with code %s", tc.method, tc.path, rec.Code, rec.Body, tc.status, tc.code)
		}
	}
}

// TestCheckpointFromGossip: a checkpoint pushed by gossip that the node's
// trusted keys sign and that is newer than the one it holds is served at
// once, before the origin has it; a forged, expired or older one is not
// (and a refusal is returned, so gossip does not relay a forgery). A node
// without trusted keys takes nothing from gossip.
func TestCheckpointFromGossip(t *testing.T) {
	ctx := context.Background()
	s, stranger := newSigner(t), newSigner(t)
	keys, err := sign.NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	inOrigin := ckpt(t, s, "keys", record.MakeVersion(now.Add(-4*time.Second), 0), now.Add(-2*time.Second))
	pushed := ckpt(t, s, "keys", record.MakeVersion(now.Add(-2*time.Second), 0), now)
	raw := func(c *checkpoint.Checkpoint) []byte {
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	latest := func(parts origin.SnapshotParts) *checkpoint.Checkpoint {
		t.Helper()
		c, err := checkpoint.GetLatest(ctx, parts, "keys")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	o := newPartsOrigin(t)
	if err := checkpoint.PutLatest(ctx, o, inOrigin); err != nil {
		t.Fatal(err)
	}
	node, parts := tierOver(t, o, func(c *cachenode.Config) {
		cachenode.SetCheckpointTTL(c, 0)
		c.Verifier = keys
	})
	sameCheckpoint(t, "before the push", latest(parts), inOrigin)
	if err := node.OfferCheckpoint(raw(pushed), "gossip/push"); err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, "after the push", latest(parts), pushed)
	expired := ckpt(t, s, "keys", pushed.Version+1, now.Add(-3*time.Minute))
	for what, c := range map[string]*checkpoint.Checkpoint{
		"forged":  ckpt(t, stranger, "keys", pushed.Version+1, now),
		"expired": expired,
	} {
		if err := node.OfferCheckpoint(raw(c), "gossip/push"); err == nil {
			t.Errorf("%s checkpoint taken from gossip", what)
		}
	}
	if err := node.OfferCheckpoint(raw(inOrigin), "gossip/push"); err != nil {
		t.Fatalf("an older valid checkpoint: %v (not held, but not refused: gossip decides relaying)", err)
	}
	sameCheckpoint(t, "after forged, expired and older pushes", latest(parts), pushed)

	o2 := newPartsOrigin(t)
	if err := checkpoint.PutLatest(ctx, o2, inOrigin); err != nil {
		t.Fatal(err)
	}
	plain, parts2 := tierOver(t, o2, func(c *cachenode.Config) { cachenode.SetCheckpointTTL(c, 0) })
	if err := plain.OfferCheckpoint(raw(pushed), "gossip/push"); err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, "a node without trusted keys after a push", latest(parts2), inOrigin)
}

// TestPartTTLsFollowTiming: a latest checkpoint is shared as long as a log
// read (Timing.LogTailTTL), a snapshot proof for a tenth of a checkpoint's
// lifetime (30 s without checkpoints).
func TestPartTTLsFollowTiming(t *testing.T) {
	for _, c := range []struct {
		name        string
		timing      origin.Timing
		ckpt, proof time.Duration
	}{
		{"default", origin.DefaultTiming(), 250 * time.Millisecond, 30 * time.Second},
		{"local", origin.LocalTiming(), 50 * time.Millisecond, 30 * time.Second},
		{"short lifetime", func() origin.Timing { t := origin.DefaultTiming(); t.CheckpointLifetime = time.Minute; return t }(), 250 * time.Millisecond, 6 * time.Second},
		{"no checkpoints", func() origin.Timing { t := origin.DefaultTiming(); t.CheckpointLifetime = 0; return t }(), 250 * time.Millisecond, 30 * time.Second},
	} {
		cfg := cachenode.DefaultConfig()
		cfg.Timing = c.timing
		if got := cachenode.CheckpointTTL(cfg); got != c.ckpt {
			t.Errorf("%s: checkpoint TTL %v, want %v", c.name, got, c.ckpt)
		}
		if got := cachenode.ProofTTL(cfg); got != c.proof {
			t.Errorf("%s: proof TTL %v, want %v", c.name, got, c.proof)
		}
	}
}
