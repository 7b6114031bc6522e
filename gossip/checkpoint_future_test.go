package gossip

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/record"
)

// TestForgedFutureCheckpointDoesNotBlockRelay (issue 23 audit, defect B): a relay that cannot verify
// checkpoints (a member without trusted keys, whose OnCheckpoint accepts
// everything, as dataplane's does) is sent, by an insider holding the
// gossip key, a checkpoint of keys claiming a version ten years ahead.
// The relay forwards it (it cannot tell) and remembers it as the newest it
// forwarded; the publisher's real checkpoints that follow must still
// reach the relay's region, or one forged message silences checkpoint
// gossip to a whole region for ten years.
func TestForgedFutureCheckpointDoesNotBlockRelay(t *testing.T) {
	t.Parallel()
	var hooks cpHooks
	c := newCluster(t, clusterOpts{n: 3, regions: []string{"a", "b", "b"}, tweak: func(i int, cfg *Config) {
		cfg.tune.RelaysPerRegion = 1
		h := hooks.hook(i)
		cfg.OnCheckpoint = func(raw []byte, source string) error { _ = h(raw, source); return nil }
	}})
	inB := []*memberlist.Node{{Name: c.nodes[1].Name()}, {Name: c.nodes[2].Name()}}
	relay, other := 1, 2
	if pickRelays(cpID("keys"), inB, 1)[0].Name == c.nodes[2].Name() {
		relay, other = 2, 1
	}
	to := &memberlist.Node{Name: c.nodes[relay].Name()}
	for _, m := range c.nodes[0].Members() {
		if m.Name == to.Name {
			host, port, err := splitHostPort(m.Addr)
			if err != nil {
				t.Fatal(err)
			}
			to.Addr, to.Port = parseIP(t, host), uint16(port)
		}
	}
	s, stranger := testSigner(t), testSigner(t)
	now := time.Now().Truncate(time.Millisecond)
	forged := signedCheckpoint(t, stranger, "keys", record.MakeVersion(now.AddDate(10, 0, 0), 0), now.AddDate(10, 0, 0))
	if err := c.nodes[0].ml.Load().SendReliable(to, encodeCheckpointMsg(cpMsg{raw: forged, path: pathRelay})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool { return hooks.has(relay, forged) }, "the relay to receive the forged checkpoint")
	real := signedCheckpoint(t, s, "keys", record.MakeVersion(now, 0), now)
	if err := c.nodes[0].PushCheckpoint(real); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return hooks.has(other, real) }, "the relay's region to receive the publisher's checkpoint after the forged one (relay counters: relayed %v, not relayed %v)",
		testutil.ToFloat64(c.nodes[relay].m.cps.WithLabelValues("relayed")), testutil.ToFloat64(c.nodes[relay].m.cps.WithLabelValues("not_relayed")))
}
