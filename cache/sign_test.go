package cache

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// TestVerifierOnApplyPaths: with Options.Verifier, Apply, ApplyBatch
// (verifying in parallel) and Reload install only records signed by the
// trusted key; the rest are refused and counted by reason, and Reload's
// own deletes of absent keys (which no publisher signs) still happen.
func TestVerifierOnApplyPaths(t *testing.T) {
	pub, _ := sign.NewSigner(ed25519.NewKeyFromSeed(make([]byte, 32)))
	other, _ := sign.NewSigner(ed25519.NewKeyFromSeed(append(make([]byte, 31), 1)))
	v, _ := sign.NewVerifier(pub.Public())
	o := DefaultOptions()
	o.Default.Fresh = time.Hour
	o.Logger = slog.New(slog.DiscardHandler)
	o.Complete = []string{"keys"}
	o.Verifier = v
	c, err := New(mem.New(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	var batch []record.Record
	want := map[string]bool{}
	for i := range 300 {
		r := record.Record{Namespace: "keys", Key: fmt.Sprintf("k%03d", i), Value: []byte("v"), Version: record.Version(i + 1)}
		switch i % 3 {
		case 0:
			r = pub.Sign(r)
			want[r.Key] = true
		case 1:
			r = other.Sign(r)
		}
		batch = append(batch, r)
	}
	if got := c.ApplyBatch(batch); got != 100 {
		t.Fatalf("ApplyBatch installed %d, want 100", got)
	}
	for _, r := range batch {
		_, held := c.Peek("keys", r.Key)
		if held != want[r.Key] {
			t.Errorf("%s held = %v, want %v", r.Key, held, want[r.Key])
		}
	}
	if c.Apply(record.Record{Namespace: "keys", Key: "x", Value: []byte("v"), Version: 1000}) {
		t.Error("Apply installed an unsigned record")
	}
	tampered := pub.Sign(record.Record{Namespace: "keys", Key: "y", Value: []byte("v"), Version: 1000})
	tampered.Value = []byte("w")
	if c.Apply(tampered) {
		t.Error("Apply installed a record whose value does not match its signature")
	}
	for reason, n := range map[string]float64{"unsigned": 101, "untrusted_key": 100, "digest_mismatch": 1} {
		if got := testutil.ToFloat64(c.metrics.sigRefused.WithLabelValues(reason)); got != n {
			t.Errorf("signature_refused_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	// Reload: a snapshot holding k000 (signed) and an unsigned k004 drops
	// every other held key as absent, and does not take k004.
	snap := record.Snapshot{Namespace: "keys", Version: 2000, Records: []record.Record{batch[0], {Namespace: "keys", Key: "k004", Value: []byte("evil"), Version: 1500}}}
	c.Reload(snap)
	if e, ok := c.Peek("keys", "k000"); !ok || e.Record.Tombstone {
		t.Errorf("k000 after Reload: %+v, %v", e, ok)
	}
	if e, ok := c.Peek("keys", "k004"); ok && !e.Record.Tombstone {
		t.Errorf("Reload took the unsigned k004: %+v", e)
	}
	if e, ok := c.Peek("keys", "k006"); ok && !e.Record.Tombstone {
		t.Errorf("k006, absent from the snapshot, still held: %+v", e)
	}
}
