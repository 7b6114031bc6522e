package dataplane_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

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

// counterSum sums the samples of metric family name in reg whose label
// reason is reason.
func counterSum(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestOriginForgeriesRefused is the origin path of issue 12: someone with
// write access to the bucket (but not the publisher's signing key) writes
// records into the origin directly. A node that trusts only the publisher's
// key refuses them on every read: in a snapshot at warm-up (the key is
// then unknown: a complete namespace answers not found), on an origin read
// of a key it does not hold (the read fails: unavailable, never the forged
// value), and on a refresh of a key it holds (the older good value keeps
// being served, marked stale). Each refusal is counted by reason.
func TestOriginForgeriesRefused(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	clock := record.NewClock(nil)
	pub, evil := newSigner(t), newSigner(t)
	v, err := sign.NewVerifier(pub.Public())
	if err != nil {
		t.Fatal(err)
	}
	write := func(r record.Record) record.Record {
		t.Helper()
		if _, err := origin.Publish(ctx, s, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	rec := func(ns, key, val string) record.Record {
		return record.Record{Namespace: ns, Key: key, Value: []byte(val), Version: clock.Now()}
	}

	good := write(pub.Sign(rec("routes", "a.example.com", `{"ok":1}`)))
	forgedRoute := write(rec("routes", "evil.example.com", `{"evil":1}`)) // unsigned
	badRoute := write(evil.Sign(rec("routes", "b.example.com", `{"evil":2}`)))
	snap := record.Snapshot{Namespace: "routes", Version: badRoute.Version, Records: []record.Record{good, forgedRoute, badRoute}}
	if err := s.PutSnapshot(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSnapshot(ctx, record.Snapshot{Namespace: "keys", Version: badRoute.Version}); err != nil {
		t.Fatal(err)
	}
	cfgGood := write(pub.Sign(rec("cfg", "good", "v1")))
	write(rec("cfg", "unsigned", "evil"))
	write(evil.Sign(rec("cfg", "untrusted", "evil")))
	moved := pub.Sign(rec("cfg", "moved", "signed value"))
	moved.Value = []byte("another value")
	write(moved)

	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(ctx, dataplane.Config{Origin: s, Logger: quiet(), Verifier: v, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	// Warm-up from the origin snapshot: only the signed route is taken.
	if got, err := n.Get(ctx, "routes", "a.example.com"); err != nil || got.Version != good.Version {
		t.Fatalf("signed route: %+v, %v", got, err)
	}
	for _, k := range []string{"evil.example.com", "b.example.com"} {
		if got, err := n.Get(ctx, "routes", k); err == nil {
			t.Errorf("forged route %s served: %q", k, got.Data)
		}
	}
	const metric = "dataplane_cache_signature_refused_total"
	if u, k := counterSum(t, reg, metric, "unsigned"), counterSum(t, reg, metric, "untrusted_key"); u < 1 || k < 1 {
		t.Errorf("snapshot refusals counted: unsigned %v, untrusted_key %v; want at least 1 each", u, k)
	}

	// Origin reads of keys not held: the read fails, nothing is served.
	for _, k := range []string{"unsigned", "untrusted", "moved"} {
		got, err := n.Get(ctx, "cfg", k)
		if err == nil {
			t.Errorf("cfg/%s: served %q, want an error", k, got.Data)
		} else if errors.Is(err, dataplane.ErrNotFound) {
			t.Errorf("cfg/%s: %v, want a failed read, not not-found", k, err)
		}
	}
	if d := counterSum(t, reg, metric, "digest_mismatch"); d != 1 {
		t.Errorf("digest_mismatch = %v, want 1", d)
	}

	// A held key overwritten in the origin by an unsigned newer version:
	// the good value keeps being served, stale.
	if got, err := n.Get(ctx, "cfg", "good"); err != nil || string(got.Data) != "v1" {
		t.Fatalf("cfg/good: %+v, %v", got, err)
	}
	over := rec("cfg", "good", "overwritten")
	if err := s.CompareAndSwap(ctx, over, cfgGood.Version); err != nil {
		t.Fatal(err)
	}
	dataplane.Announce(n, "cfg", "good", over.Version) // as the log would announce it
	got, err := n.Get(ctx, "cfg", "good")
	if err != nil || string(got.Data) != "v1" || got.Version != cfgGood.Version || !got.Stale {
		t.Fatalf("after an unsigned overwrite: %+v (%q), %v; want the signed v1, stale", got, got.Data, err)
	}
}

// TestSignedPublishReachesVerifyingNode: records signed by the publisher's
// key are served by a node that trusts it, and a node without a Verifier
// (signing off) serves signed and unsigned records alike.
func TestSignedPublishReachesVerifyingNode(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	clock := record.NewClock(nil)
	pub := newSigner(t)
	v, _ := sign.NewVerifier(pub.Public())
	signed := pub.Sign(record.Record{Namespace: "cfg", Key: "s", Value: []byte("S"), Version: clock.Now()})
	unsigned := record.Record{Namespace: "cfg", Key: "u", Value: []byte("U"), Version: clock.Now()}
	for _, r := range []record.Record{signed, unsigned} {
		if _, err := origin.Publish(ctx, s, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name       string
		verifier   *sign.Verifier
		unsignedOK bool
	}{
		{"verifying", v, false},
		{"signing off", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := dataplane.Open(ctx, dataplane.Config{Origin: s, Logger: quiet(), Verifier: tc.verifier, Namespaces: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if got, err := n.Get(ctx, "cfg", "s"); err != nil || string(got.Data) != "S" {
				t.Fatalf("signed: %q, %v", got.Data, err)
			}
			_, err = n.Get(ctx, "cfg", "u")
			if (err == nil) != tc.unsignedOK {
				t.Fatalf("unsigned: err %v, want accepted=%v", err, tc.unsignedOK)
			}
		})
	}
}

// TestSignedGossipCluster: three verifying nodes; a signed change published
// through node 0's gossip reaches every node's cache (verified once by
// gossip, installed without a second check), while an unsigned change
// published the same way is applied by none and counted.
func TestSignedGossipCluster(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	clock := record.NewClock(nil)
	pub := newSigner(t)
	v, _ := sign.NewVerifier(pub.Public())
	var nodes []*dataplane.Node
	var regs []*prometheus.Registry
	var seeds []string
	for i := 0; i < 3; i++ {
		g := gossip.DefaultLocalConfig()
		g.SecretKeys = [][]byte{[]byte("signed-cluster-key-0123456789abc")}
		g.Name = fmt.Sprintf("signed-%d", i)
		g.Region = "local"
		g.Seeds = seeds
		reg := prometheus.NewRegistry()
		n, err := dataplane.Open(ctx, dataplane.Config{Origin: s, Gossip: &g.Cluster, Logger: quiet(), Verifier: v, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes, regs = append(nodes, n), append(regs, reg)
		seeds = []string{nodes[0].GossipAddr()}
	}
	eventually(t, 30*time.Second, "3 members", func() bool {
		for _, n := range nodes {
			if len(n.Members()) != 3 {
				return false
			}
		}
		return true
	})
	signed := pub.Sign(record.Record{Namespace: "routes", Key: "s.example.com", Value: []byte("S"), Version: clock.Now()})
	unsigned := record.Record{Namespace: "routes", Key: "u.example.com", Value: []byte("U"), Version: clock.Now()}
	for _, r := range []record.Record{signed, unsigned} {
		if _, err := origin.Publish(ctx, s, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].Publish(ctx, signed); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		eventually(t, 30*time.Second, fmt.Sprintf("node %d holding the signed change", i), func() bool {
			e, ok := n.Peek("routes", "s.example.com")
			return ok && e.Record.Version == signed.Version
		})
	}
	// node 0 refuses the unsigned change itself, so nothing is spread.
	if err := nodes[0].Publish(ctx, unsigned); err != nil {
		t.Fatal(err)
	}
	if got := counterSum(t, regs[0], "dataplane_gossip_messages_dropped_total", "unsigned"); got != 1 {
		t.Fatalf("node 0 dropped %v unsigned changes, want 1", got)
	}
	for i, n := range nodes {
		if e, ok := n.Peek("routes", "u.example.com"); ok && !e.Record.Tombstone {
			t.Errorf("node %d holds the unsigned change", i)
		}
		if got := counterSum(t, regs[i], "dataplane_cache_signature_refused_total", "unsigned"); got != 0 {
			t.Errorf("node %d: the cache saw %v unsigned records; gossip should have refused them first", i, got)
		}
	}
}
