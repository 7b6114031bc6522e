package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// signedCheckpoint returns checkpoint.Marshal's bytes of a checkpoint of
// ns at v issued at issued, signed by s.
func signedCheckpoint(t testing.TB, s *sign.Signer, ns string, v record.Version, issued time.Time) []byte {
	t.Helper()
	c := &checkpoint.Checkpoint{Namespace: ns, Version: v, Count: 3, IssuedAt: issued, ExpiresAt: issued.Add(time.Minute)}
	if err := c.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cpHooks records, per node, the checkpoints its OnCheckpoint received.
type cpHooks struct {
	mu  sync.Mutex // guards got
	got map[int][][]byte
}

func (h *cpHooks) hook(i int) func([]byte, string) error {
	return func(raw []byte, source string) error {
		if source != "gossip/push" && source != "gossip/relay" {
			return fmt.Errorf("source %q", source)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.got == nil {
			h.got = make(map[int][][]byte)
		}
		h.got[i] = append(h.got[i], raw)
		return nil
	}
}

// has reports whether node i received raw.
func (h *cpHooks) has(i int, raw []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.got[i], func(b []byte) bool { return bytes.Equal(b, raw) })
}

func (h *cpHooks) count(i int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got[i])
}

// TestCheckpointReachesEveryNodeUnderLoss: a checkpoint pushed by node 0
// reaches every other node's OnCheckpoint hook, in three regions (so by
// relays splitting their region), with 30% of packets lost on every link
// (membership and acks suffer; checkpoints travel by stream).
func TestCheckpointReachesEveryNodeUnderLoss(t *testing.T) {
	t.Parallel()
	var hooks cpHooks
	net := netsim.New(11)
	regions := []string{"a", "b", "c"}
	c := newCluster(t, clusterOpts{n: 9, net: net, regions: regions, zones: regions, tweak: func(i int, cfg *Config) {
		cfg.OnCheckpoint = hooks.hook(i)
	}})
	net.SetDefault(netsim.Link{Delay: time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.3})
	s := testSigner(t)
	raw := signedCheckpoint(t, s, "keys", 1<<40, time.Now())
	if err := c.nodes[0].PushCheckpoint(raw); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		for i := 1; i < 9; i++ {
			if !hooks.has(i, raw) {
				return false
			}
		}
		return true
	}, "every node's hook to receive the checkpoint")
	if hooks.count(0) != 0 {
		t.Errorf("the pushing node's own hook got %d checkpoints", hooks.count(0))
	}
	relayed := 0.0
	for _, n := range c.nodes {
		relayed += testutil.ToFloat64(n.m.cps.WithLabelValues("relayed"))
	}
	if relayed < 2 { // at least one relay in each other region
		t.Errorf("%v relays forwarded it, want at least 2", relayed)
	}
	if err := c.nodes[0].PushCheckpoint(raw); err == nil {
		t.Error("pushing the same checkpoint again: no error")
	}
	if err := c.nodes[0].PushCheckpoint([]byte("DK garbage")); !errors.Is(err, record.ErrCorrupt) {
		t.Errorf("pushing garbage: %v, want ErrCorrupt", err)
	}
}

// TestRelayDoesNotForwardOlderCheckpoint: a relay hands every checkpoint
// to its node but forwards only one newer than the last it forwarded for
// the namespace (higher version, or the same version issued later), so a
// replayed old checkpoint is not amplified.
func TestRelayDoesNotForwardOlderCheckpoint(t *testing.T) {
	t.Parallel()
	var hooks cpHooks
	c := newCluster(t, clusterOpts{n: 4, regions: []string{"a", "b", "b", "b"}, tweak: func(i int, cfg *Config) {
		cfg.OnCheckpoint = hooks.hook(i)
		cfg.tune.RelaysPerRegion = 1
	}})
	var inB []*memberlist.Node
	for i := 1; i < 4; i++ {
		inB = append(inB, &memberlist.Node{Name: c.nodes[i].Name()})
	}
	relayName := pickRelays(cpID("keys"), inB, 1)[0].Name
	relay, others := -1, []int{}
	for i := 1; i < 4; i++ {
		if c.nodes[i].Name() == relayName {
			relay = i
		} else {
			others = append(others, i)
		}
	}
	relayed := func() float64 { return testutil.ToFloat64(c.nodes[relay].m.cps.WithLabelValues("relayed")) }
	notRelayed := func() float64 { return testutil.ToFloat64(c.nodes[relay].m.cps.WithLabelValues("not_relayed")) }

	s := testSigner(t)
	now := time.Now().Truncate(time.Millisecond)
	v := record.MakeVersion(now, 0)
	current := signedCheckpoint(t, s, "keys", v, now)
	if err := c.nodes[0].PushCheckpoint(current); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		return hooks.has(relay, current) && hooks.has(others[0], current) && hooks.has(others[1], current)
	}, "region b to receive the current checkpoint")
	if relayed() != 1 {
		t.Fatalf("relay forwarded %v checkpoints, want 1", relayed())
	}

	// Replays to the relay, as an insider holding the gossip key could
	// send: an older version, and the current checkpoint itself.
	older := signedCheckpoint(t, s, "keys", v-1, now.Add(time.Second)) // issued later, but older
	to := &memberlist.Node{Name: relayName, Addr: nil}
	for _, m := range c.nodes[0].Members() {
		if m.Name == relayName {
			host, port, err := splitHostPort(m.Addr)
			if err != nil {
				t.Fatal(err)
			}
			to.Addr, to.Port = parseIP(t, host), uint16(port)
		}
	}
	for k, raw := range [][]byte{older, current} {
		if err := c.nodes[0].ml.Load().SendReliable(to, encodeCheckpointMsg(cpMsg{raw: raw, path: pathRelay})); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() bool { return notRelayed() == float64(k+1) }, "the relay to refuse to forward replay %d", k)
	}
	if !hooks.has(relay, older) {
		t.Error("the relay's node was not handed the older checkpoint")
	}
	if relayed() != 1 {
		t.Errorf("relay forwarded %v checkpoints, want still 1", relayed())
	}

	// The same version issued later is newer: forwarded to every member.
	renewed := signedCheckpoint(t, s, "keys", v, now.Add(2*time.Second))
	if err := c.nodes[0].PushCheckpoint(renewed); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		return hooks.has(others[0], renewed) && hooks.has(others[1], renewed)
	}, "region b to receive the renewed checkpoint")
	for _, i := range others {
		if hooks.has(i, older) {
			t.Errorf("node %d received the replayed older checkpoint", i)
		}
	}
	if relayed() != 2 {
		t.Errorf("relay forwarded %v checkpoints, want 2", relayed())
	}
}

// TestRelayKeepsRefusedCheckpoint: a checkpoint the node refuses (here:
// every one, as a bad signature would be) is not forwarded; one that
// verified but does not match the node's state (checkpoint.ErrMismatch)
// is.
func TestRelayKeepsRefusedCheckpoint(t *testing.T) {
	t.Parallel()
	var verdict error
	var mu sync.Mutex
	var hooks cpHooks
	c := newCluster(t, clusterOpts{n: 3, regions: []string{"a", "b", "b"}, tweak: func(i int, cfg *Config) {
		cfg.tune.RelaysPerRegion = 1
		h := hooks.hook(i)
		cfg.OnCheckpoint = func(raw []byte, source string) error {
			_ = h(raw, source)
			mu.Lock()
			defer mu.Unlock()
			return verdict
		}
	}})
	s := testSigner(t)
	now := time.Now().Truncate(time.Millisecond)
	set := func(err error) { mu.Lock(); verdict = err; mu.Unlock() }
	relayedSum := func() float64 {
		return testutil.ToFloat64(c.nodes[1].m.cps.WithLabelValues("relayed")) + testutil.ToFloat64(c.nodes[2].m.cps.WithLabelValues("relayed"))
	}
	notRelayedSum := func() float64 {
		return testutil.ToFloat64(c.nodes[1].m.cps.WithLabelValues("not_relayed")) + testutil.ToFloat64(c.nodes[2].m.cps.WithLabelValues("not_relayed"))
	}

	set(fmt.Errorf("checkpoint: %w", sign.ErrBadSignature))
	bad := signedCheckpoint(t, s, "keys", 10, now)
	if err := c.nodes[0].PushCheckpoint(bad); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return notRelayedSum() == 1 }, "the relay to keep the refused checkpoint")
	if relayedSum() != 0 {
		t.Errorf("a refused checkpoint was forwarded")
	}

	set(fmt.Errorf("keys: %w", checkpoint.ErrMismatch))
	behind := signedCheckpoint(t, s, "keys", 20, now)
	if err := c.nodes[0].PushCheckpoint(behind); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return hooks.has(1, behind) && hooks.has(2, behind) }, "both nodes of region b to receive it")
	if relayedSum() != 1 {
		t.Errorf("relayed %v, want 1", relayedSum())
	}
}

func parseIP(t testing.TB, host string) net.IP {
	t.Helper()
	ip := net.ParseIP(host)
	if ip == nil {
		t.Fatalf("bad IP %q", host)
	}
	return ip
}
