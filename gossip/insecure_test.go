package gossip

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/record"
)

// TestPlaintextIsOptIn: a Config without SecretKeys is refused unless it
// sets Insecure, and so is one with keys whose memberlist would accept
// plaintext packets; each error names the fields to set.
func TestPlaintextIsOptIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings of the error; nil: valid
	}{
		{"no keys, not insecure", func(c *Config) {}, []string{"SecretKeys", "Insecure"}},
		{"no keys, insecure", func(c *Config) { c.Insecure = true }, nil},
		{"keys", func(c *Config) { c.SecretKeys = [][]byte{keyA} }, nil},
		{"keys and insecure", func(c *Config) { c.SecretKeys, c.Insecure = [][]byte{keyA}, true }, nil},
		{"keys, plaintext accepted", func(c *Config) {
			ml := *c.Memberlist
			ml.GossipVerifyIncoming = false
			c.SecretKeys, c.Memberlist = [][]byte{keyA}, &ml
		}, []string{"GossipVerifyIncoming"}},
	} {
		c := DefaultLocalConfig()
		tc.mutate(&c)
		err := c.validate()
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: validated", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %s", tc.name, err, w)
			}
		}
	}
	c := DefaultLocalConfig()
	if _, err := New(c, newTestApplier(t), nil); err == nil || !strings.Contains(err.Error(), "Insecure") {
		t.Fatalf("New without keys or Insecure = %v, want an error naming Insecure", err)
	}
}

// TestForgedAckIgnored: acknowledgements ride memberlist's encrypted packet
// transport, so a sender without the cluster key (plaintext, or another
// key) cannot acknowledge a push in a member's name and so cannot suppress
// its retries. The member itself, sending the same bytes, can.
func TestForgedAckIgnored(t *testing.T) {
	t.Parallel()
	var errs atomic.Int64 // error lines node 0 logs: rejected packets
	c := newCluster(t, clusterOpts{n: 2, tweak: func(i int, cfg *Config) {
		cfg.SecretKeys = [][]byte{keyA}
		if i == 0 {
			cfg.Logger = slog.New(countErrors{&errs, cfg.Logger.Handler()})
		}
	}})
	a, b := c.nodes[0], c.nodes[1]
	rec := record.Record{Namespace: "routes", Key: "acked.example.com", Value: []byte("{}"), Version: c.clock.Now()}
	// A push from a to b, awaiting b's acknowledgement.
	p := a.acks.add(change{rec: rec}, []target{{node: &memberlist.Node{Name: b.Name()}, path: pathPush}}, "", 16, a.rtt.timeout, time.Minute)
	if p == nil {
		t.Fatal("ack table refused the push")
	}
	t.Cleanup(func() { a.acks.remove(p) })
	forged := encodeAck(ack{ns: rec.Namespace, key: rec.Key, version: rec.Version, from: b.Name()})
	to := memberlist.Address{Addr: a.Addr(), Name: a.Name()}

	before := errs.Load()
	for name, keys := range map[string][][]byte{"no-key": nil, "wrong-key": {keyB}} {
		cfg := testConfig(t, name)
		cfg.SecretKeys = keys
		o, err := New(cfg, newTestApplier(t), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { o.Close() })
		if err := o.ml.Load().SendToAddress(to, forged); err != nil {
			t.Fatalf("%s: send: %v", name, err)
		}
	}
	// Node 0 has refused both packets (memberlist logs a failed decrypt).
	eventually(t, 5*time.Second, func() bool { return errs.Load()-before >= 2 }, "node 0 to refuse the forged acks")
	if got := testutil.ToFloat64(a.m.acks); got != 0 {
		t.Fatalf("forged acks counted: %v", got)
	}
	p.mu.Lock()
	waiting := len(p.waiting)
	p.mu.Unlock()
	if waiting != 1 {
		t.Fatalf("forged ack cleared the push: still waiting for %d", waiting)
	}

	// Positive control: b sends the same bytes with the cluster key.
	if err := b.ml.Load().SendToAddress(to, forged); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the member's own ack was not taken")
	}
	// The counter is incremented just after the ack closes p.done.
	eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(a.m.acks) == 1 }, "the member's ack to be counted once")
}
