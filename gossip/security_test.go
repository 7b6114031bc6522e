package gossip

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/record"
)

var (
	keyA = bytes.Repeat([]byte{0xA}, 32)
	keyB = bytes.Repeat([]byte{0xB}, 16)
)

// inject sends a change message straight to node to, by packet and by
// stream, through from's memberlist (and so with from's keys).
func inject(t *testing.T, from *Node, to *Node, rec record.Record) {
	t.Helper()
	msg := encodeChange(change{rec: rec, inline: true, path: pathPush})
	host, port, err := splitHostPort(to.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ml := from.ml.Load()
	if err := ml.SendToAddress(memberlist.Address{Addr: to.Addr(), Name: to.Name()}, msg); err != nil {
		t.Logf("packet injection: %v", err)
	}
	target := &memberlist.Node{Name: to.Name(), Addr: net.ParseIP(host), Port: uint16(port)}
	if err := ml.SendReliable(target, msg); err != nil {
		t.Logf("stream injection: %v", err)
	}
}

// TestWrongKeyCannotJoinOrInject starts an encrypted cluster and two
// outsiders, one with another key and one with none: neither can join, and
// changes they send straight to members' addresses are never applied. A
// member sending the same way is applied, so the test is not vacuous.
func TestWrongKeyCannotJoinOrInject(t *testing.T) {
	t.Parallel()
	var errs [3]atomic.Int64 // error lines each member logs: rejected traffic
	c := newCluster(t, clusterOpts{n: 3, tweak: func(i int, cfg *Config) {
		cfg.SecretKeys = [][]byte{keyA}
		cfg.Logger = slog.New(countErrors{&errs[i], cfg.Logger.Handler()})
	}})
	var before [3]int64
	for i := range errs {
		before[i] = errs[i].Load()
	}

	outsiders := map[string][][]byte{"wrong-key": {keyB}, "no-key": nil}
	for name, keys := range outsiders {
		cfg := testConfig(t, name)
		cfg.SecretKeys = keys
		cfg.Seeds = []string{c.nodes[0].Addr()}
		o, err := New(cfg, newTestApplier(t), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { o.Close() })
		if got := len(o.Members()); got != 1 {
			t.Errorf("%s: sees %d members, want only itself", name, got)
		}
		for _, n := range c.nodes {
			inject(t, o, n, record.Record{Namespace: "keys", Key: "evil-" + name, Value: []byte("pwned"), Version: c.clock.Now()})
		}
		if err := o.Publish(context.Background(), record.Record{Namespace: "keys", Key: "evil-pub-" + name, Value: []byte("x"), Version: c.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	// Every member has rejected the outsiders' 4 injections (a packet and a
	// stream each), logging an error for each.
	eventually(t, 5*time.Second, func() bool {
		for i := range errs {
			if errs[i].Load()-before[i] < 4 {
				return false
			}
		}
		return true
	}, "members to reject the outsiders' traffic")

	// Positive control: a member injecting the same way is heard.
	ok := record.Record{Namespace: "keys", Key: "barrier", Value: []byte("ok"), Version: c.clock.Now()}
	for _, n := range c.nodes[1:] {
		inject(t, c.nodes[0], n, ok)
	}
	eventually(t, 5*time.Second, func() bool {
		for _, a := range c.appliers[1:] {
			if a.version("keys", "barrier") != ok.Version {
				return false
			}
		}
		return true
	}, "member's injected change to arrive")

	for i, a := range c.appliers {
		for _, k := range []string{"evil-wrong-key", "evil-no-key", "evil-pub-wrong-key", "evil-pub-no-key"} {
			if h := a.get("keys", k); h.version != 0 {
				t.Errorf("node %d applied outsider change %s: %+v", i, k, h)
			}
		}
		for _, m := range c.nodes[i].Members() {
			if m.Name == "wrong-key" || m.Name == "no-key" {
				t.Errorf("node %d lists outsider %s as a member", i, m.Name)
			}
		}
	}
}

// TestKeyRotation rotates the cluster key in the documented three steps,
// checking after each that changes still reach every node, and that the
// old key alone no longer gets in.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{n: 3, tweak: func(i int, cfg *Config) { cfg.SecretKeys = [][]byte{keyA} }})
	check := func(step string) {
		t.Helper()
		rec := c.publish(0, "keys", "rotation", []byte(step))
		eventually(t, 5*time.Second, func() bool { return c.has("keys", "rotation", rec.Version) }, "change after %s", step)
	}
	check("start")
	for _, n := range c.nodes {
		if err := n.InstallKey(keyB); err != nil {
			t.Fatal(err)
		}
	}
	check("install")
	// Switch one node at a time: mixed primaries must keep working.
	for _, n := range c.nodes {
		if err := n.UseKey(keyB); err != nil {
			t.Fatal(err)
		}
		check("use on " + n.Name())
	}
	for _, n := range c.nodes {
		if err := n.RemoveKey(keyA); err != nil {
			t.Fatal(err)
		}
		if got := n.SecretKeys(); len(got) != 1 || !bytes.Equal(got[0], keyB) {
			t.Fatalf("%s keys after rotation = %x", n.Name(), got)
		}
	}
	check("remove")

	old := testConfig(t, "old-key")
	old.SecretKeys = [][]byte{keyA}
	old.Seeds = []string{c.nodes[0].Addr()}
	o, err := New(old, newTestApplier(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if got := len(o.Members()); got != 1 {
		t.Errorf("node with the retired key sees %d members, want 1", got)
	}

	plain, err := New(testConfig(t, "plain"), newTestApplier(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.InstallKey(keyA); err != ErrNoKeyring {
		t.Errorf("InstallKey without encryption = %v, want ErrNoKeyring", err)
	}
}

// TestGarbageIsDroppedNotApplied sends malformed messages and digests to a
// node, locally and over the network from a member: each is counted and
// dropped, nothing reaches the Applier, the node keeps working.
func TestGarbageIsDroppedNotApplied(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{n: 2})
	n, a := c.nodes[1], c.appliers[1]
	good := encodeChange(change{rec: record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: 5}, inline: true})
	garbage := [][]byte{
		nil,
		{0},
		{kindChange},
		{kindDigest, 0},
		good[:len(good)-1],
		append(append([]byte(nil), good...), 0),
		bytes.Repeat([]byte{0xff}, 2000),
		func() []byte { b := append([]byte(nil), good...); b[len(b)-6] ^= 1; return b }(),
	}
	d := delegate{n}
	for _, g := range garbage {
		d.NotifyMsg(g)
		d.MergeRemoteState(g, false)
	}
	want := float64(2 * len(garbage))
	if got := testutil.ToFloat64(n.m.dropped.WithLabelValues("malformed")); got != want {
		t.Errorf("dropped = %v, want %v", got, want)
	}
	// Over the network, from a member.
	for _, g := range garbage[1:] {
		if err := c.nodes[0].ml.Load().SendToAddress(memberlist.Address{Addr: n.Addr(), Name: n.Name()}, g); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(n.m.dropped.WithLabelValues("malformed")) >= want+float64(len(garbage)-1)
	}, "network garbage to be dropped")
	if applies, invalidates, _ := a.counts(); applies+invalidates != 0 {
		t.Errorf("garbage reached the applier: %d applies, %d invalidations", applies, invalidates)
	}
	rec := c.publish(0, "keys", "after-garbage", []byte("fine"))
	eventually(t, 5*time.Second, func() bool { return c.has("keys", "after-garbage", rec.Version) }, "node still working")
}

// TestApplierPanicIsRecovered: a panicking Applier costs a metric and a log
// line, not the node.
func TestApplierPanicIsRecovered(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "panicky")
	n, err := New(cfg, Funcs{ApplyFunc: func(record.Record) bool { panic("boom") }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	rec := record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: 1}
	if err := n.Publish(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	delegate{n}.NotifyMsg(encodeChange(change{rec: record.Record{Namespace: "keys", Key: "k", Value: []byte("v"), Version: 2}, inline: true}))
	if got := testutil.ToFloat64(n.m.panics); got != 2 {
		t.Errorf("panics = %v, want 2", got)
	}
}

// countErrors counts error records, passing everything to inner.
type countErrors struct {
	n     *atomic.Int64
	inner slog.Handler
}

func (h countErrors) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.inner.Enabled(ctx, l)
}

func (h countErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.n.Add(1)
	}
	if h.inner.Enabled(ctx, r.Level) {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func (h countErrors) WithAttrs(as []slog.Attr) slog.Handler {
	return countErrors{h.n, h.inner.WithAttrs(as)}
}

func (h countErrors) WithGroup(g string) slog.Handler { return countErrors{h.n, h.inner.WithGroup(g)} }
