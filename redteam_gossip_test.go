package dataplane_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// capturePush is a publisher Notifier that hands changes and checkpoints
// to a gossip node, as pushSwitch does, and keeps every checkpoint it
// pushed (what a gossip-key holder records to replay later).
type capturePush struct {
	pushSwitch
	mu   sync.Mutex // guards seen
	seen [][]byte
}

func (p *capturePush) PushCheckpoint(raw []byte) error {
	p.mu.Lock()
	p.seen = append(p.seen, append([]byte(nil), raw...))
	p.mu.Unlock()
	return p.pushSwitch.PushCheckpoint(raw)
}

// captured returns the checkpoints of ns pushed so far, oldest first.
func (p *capturePush) captured(t *testing.T, ns string) [][]byte {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, raw := range p.seen {
		c, err := checkpoint.Unmarshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		if c.Namespace == ns {
			out = append(out, raw)
		}
	}
	return out
}

// TestGossipKeyHolderFloodAndReplayOfCheckpoints: an insider holding the
// gossip key (two members without the signing key, real memberlist nodes
// on loopback) floods a verifying node with forged checkpoints of keys,
// each claiming a newer version than the publisher's, and replays the
// publisher's own older checkpoints, while the origin and the log are
// unreachable so that gossip is the node's only source of checkpoints.
// Every forged one must be refused (untrusted key), every replay refused
// (rollback), and the real checkpoints that keep arriving must keep
// matching: neither the flood nor the replays may block them or make the
// node fail closed. The test logs what the flood cost (forged checkpoints
// received per second, matches during the flood).
func TestGossipKeyHolderFloodAndReplayOfCheckpoints(t *testing.T) {
	ctx := context.Background()
	store, raw := newPartsStore(t)
	signer, stranger := newSigner(t), newSigner(t)
	push := &capturePush{}
	pub := notifyingPublisher(t, raw, signer, push, 200*time.Millisecond)
	held, err := pub.Put(ctx, "keys", "held", []byte("allow"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Snapshot(ctx, "keys"); err != nil {
		t.Fatal(err)
	}
	d := testscale.Duration(4 * time.Second)
	open := func(name string, seeds []string, verifying bool) (*dataplane.Node, *prometheus.Registry) {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region, g.Seeds = name, "local", seeds
		reg := prometheus.NewRegistry()
		cfg := dataplane.Config{
			Origin: store, Gossip: &g.Cluster, Timing: oftenTiming(),
			Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: d}},
			Logger:    quiet(), Registerer: reg,
		}
		if verifying {
			cfg.Verifier = verifierOf(t, signer)
		}
		n, err := dataplane.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n, reg
	}
	source, _ := open("source", nil, true) // the publisher's gossip node
	seeds := []string{source.GossipAddr()}
	victim, vreg := open("victim", seeds, true)
	forger, _ := open("forger", seeds, false)     // holds the gossip key, not the signing key
	replayer, _ := open("replayer", seeds, false) // the same, replaying what it saw
	push.node.Store(source)
	eventually(t, testscale.Duration(20*time.Second), "4 members", func() bool {
		return len(victim.Members()) == 4 && len(forger.Members()) == 4 && len(replayer.Members()) == 4
	})
	_, stop := notifiedFlow(t, pub)
	defer stop()
	matches := func() float64 { return counter(t, vreg, "dataplane_node_checkpoint_matches_total", "") }
	eventually(t, testscale.Duration(20*time.Second), "the victim matching checkpoints, two of them captured", func() bool {
		return matches() >= 2 && len(push.captured(t, "keys")) >= 2
	})

	// From here on the victim hears only gossip: changes pushed by the
	// publisher's node, checkpoints pushed by it and by the insiders.
	store.down.Store(true)
	floodFor := testscale.Duration(3 * time.Second)
	m0, untrusted0, rollback0 := matches(), counterSum(t, vreg, "dataplane_node_checkpoint_refusals_total", "untrusted_key"), counterSum(t, vreg, "dataplane_node_checkpoint_refusals_total", "rollback")
	start := time.Now()
	var forged, replayed int
	var wg sync.WaitGroup
	wg.Go(func() {
		// Forged: a stranger's key, a version just ahead of the
		// publisher's (within the allowed skew), a count and hash
		// matching nothing; each one newer than the last, so every relay
		// would forward it if it did not check.
		for i := 0; time.Since(start) < floodFor; i++ {
			now := time.Now()
			c := &checkpoint.Checkpoint{Namespace: "keys", Version: record.MakeVersion(now, uint16(i)), Count: 1, IssuedAt: now.Add(time.Duration(i) * time.Millisecond), ExpiresAt: now.Add(time.Hour)}
			if err := c.Sign(stranger); err != nil {
				t.Error(err)
				return
			}
			b, err := c.Marshal()
			if err != nil {
				t.Error(err)
				return
			}
			if err := forger.PushCheckpoint(b); err == nil {
				forged++
			}
		}
	})
	wg.Go(func() {
		// Replayed: the publisher's own checkpoints, oldest first, each
		// validly signed and, for a while after it was issued, unexpired.
		for time.Since(start) < floodFor {
			for _, b := range push.captured(t, "keys") {
				if err := replayer.PushCheckpoint(b); err == nil {
					replayed++
				}
			}
			time.Sleep(20 * time.Millisecond) // pacing between rounds; nothing is waited for
		}
	})
	// The victim keeps answering the held key through the flood: real
	// checkpoints still match, so keys never fails closed.
	failed := 0
	for time.Since(start) < floodFor {
		if _, err := victim.Get(ctx, "keys", held.Key); errors.Is(err, dataplane.ErrUnavailable) {
			failed++
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(start)
	untrusted := counterSum(t, vreg, "dataplane_node_checkpoint_refusals_total", "untrusted_key") - untrusted0
	rollback := counterSum(t, vreg, "dataplane_node_checkpoint_refusals_total", "rollback") - rollback0
	during := matches() - m0
	t.Logf("flood of %v: %d forged pushed (%.0f/s), victim refused %v as untrusted; %d replays pushed, victim refused %v as rollback; %v real matches during the flood; %d reads failed closed",
		elapsed.Round(time.Millisecond), forged, float64(forged)/elapsed.Seconds(), untrusted, replayed, rollback, during, failed)
	if forged == 0 || untrusted == 0 {
		t.Fatalf("no forged checkpoint reached the victim (%d pushed, %v refused): the test did not test what it says", forged, untrusted)
	}
	if replayed == 0 || rollback == 0 {
		t.Fatalf("no replay reached the victim (%d pushed, %v refused as rollback): the test did not test what it says", replayed, rollback)
	}
	// Every 200 ms a real checkpoint: at least a few must have matched
	// through the flood, by gossip alone.
	if during < 3 {
		t.Errorf("only %v real checkpoints matched during the flood: the forged or replayed ones blocked them", during)
	}
	if failed > 0 {
		t.Errorf("keys failed closed %d times during the flood, with real checkpoints arriving", failed)
	}
	// The flood over, the real checkpoints still match.
	after := matches()
	eventually(t, testscale.Duration(10*time.Second), "a real match after the flood", func() bool { return matches() > after })
	if v, err := victim.Get(ctx, "keys", held.Key); err != nil || v.Version != held.Version {
		t.Fatalf("held key after the flood: %+v, %v", v, err)
	}

}

// BenchmarkOfferForgedCheckpoint is what one forged checkpoint (a
// stranger's key) costs the verifying node that receives it: decoding,
// one ed25519 verification, the refusal counted and logged.
//
//	go test -run '^$' -bench OfferForgedCheckpoint -benchtime 2000x .
func BenchmarkOfferForgedCheckpoint(b *testing.B) {
	keys := make([]*sign.Signer, 2)
	for i := range keys {
		_, priv, err := sign.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		if keys[i], err = sign.NewSigner(priv); err != nil {
			b.Fatal(err)
		}
	}
	signer, stranger := keys[0], keys[1]
	v, err := sign.NewVerifier(signer.Public())
	if err != nil {
		b.Fatal(err)
	}
	store, err := dir.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Namespaces: []string{"keys"}, Verifier: v, Logger: quiet(), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	now := time.Now()
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: record.MakeVersion(now, 0), Count: 1, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := c.Sign(stranger); err != nil {
		b.Fatal(err)
	}
	raw, err := c.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := dataplane.OfferCheckpoint(n, raw); err == nil {
			b.Fatal("a forged checkpoint accepted")
		}
	}
}
