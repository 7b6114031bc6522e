package gossip

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// applied is one node learning one version.
type applied struct {
	node int
	v    record.Version
	at   time.Time
}

// BenchmarkPropagation measures the time from Publish on a random node to
// the last of N nodes applying the change, on loopback through netsim, with
// and without 30% packet loss (every UDP packet: probes, gossip and eager
// pushes; streams are reliable). Nodes run DefaultLocalConfig (memberlist's
// local preset: gossip every 100 ms to 3 nodes) with the LAN log interval
// (5 s) over an in-memory origin. Each iteration publishes one change and
// waits until every node has it. Reported: p50/p99/max of the per-change
// propagation time, and the share of first deliveries by each path.
//
//	go test -run '^$' -bench BenchmarkPropagation -benchtime 200x ./gossip/
func BenchmarkPropagation(b *testing.B) {
	for _, nodes := range []int{10, 50} {
		for _, loss := range []float64{0, 0.3} {
			b.Run(fmt.Sprintf("nodes=%d/loss=%.0f%%", nodes, loss*100), func(b *testing.B) {
				benchPropagation(b, nodes, loss)
			})
		}
	}
}

// BenchmarkPropagationSigned is BenchmarkPropagation's 10-node lossless
// case with publisher signatures off and on (every node verifies every
// change, sign.Verifier), in one run so that the two share the machine's
// load.
//
//	go test -run '^$' -bench BenchmarkPropagationSigned -benchtime 200x ./gossip/
func BenchmarkPropagationSigned(b *testing.B) {
	_, priv, err := sign.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	signer, _ := sign.NewSigner(priv)
	for _, s := range []*sign.Signer{nil, signer} {
		b.Run(fmt.Sprintf("signing=%v", s != nil), func(b *testing.B) {
			benchPropagationWith(b, 10, 0, s)
		})
	}
}

func benchPropagation(b *testing.B, size int, loss float64) {
	benchPropagationWith(b, size, loss, nil)
}

// benchPropagationWith runs the propagation benchmark; with signer set,
// every change is signed and every node verifies.
func benchPropagationWith(b *testing.B, size int, loss float64, signer *sign.Signer) {
	var verifier *sign.Verifier
	if signer != nil {
		verifier, _ = sign.NewVerifier(signer.Public())
	}
	net := netsim.New(11)
	store := mem.New()
	events := make(chan applied, 64*size)
	nodes := make([]*Node, size)
	for i := range nodes {
		cfg := DefaultLocalConfig()
		cfg.Insecure = true
		cfg.Name = fmt.Sprintf("bench-%02d", i)
		cfg.Logger = testLogger(b, cfg.Name)
		if verifier != nil {
			cfg.Verifier = verifier
		}
		tr, err := net.Listen("127.0.0.1", 0, "lan", nil)
		if err != nil {
			b.Fatal(err)
		}
		cfg.Transport = tr
		for j := 0; j < min(i, 3); j++ {
			cfg.Seeds = append(cfg.Seeds, nodes[rand.IntN(i)].Addr())
		}
		report := func(v record.Version) {
			select {
			case events <- applied{i, v, time.Now()}:
			default:
			}
		}
		a := Funcs{
			ApplyFunc:      func(r record.Record) bool { report(r.Version); return true },
			InvalidateFunc: func(_, _ string, v record.Version) { report(v) },
		}
		fc := follow.DefaultConfig()
		fc.Logger = cfg.Logger
		if verifier != nil {
			fc.Verifier = verifier
		}
		f, err := follow.New(fc, a, store)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		n, err := New(cfg, a, f)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = n
		defer n.Close()
	}
	eventually(b, 60*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Members()) != size {
				return false
			}
		}
		return true
	}, "%d nodes to form a cluster", size)
	net.SetDefault(netsim.Link{Loss: loss})

	clock := record.NewClock(nil)
	var took []time.Duration
	ctx := context.Background()
	for b.Loop() {
		rec := record.Record{Namespace: "bench", Key: "k", Value: []byte("value"), Version: clock.Now()}
		if signer != nil {
			rec = signer.Sign(rec)
		}
		if _, err := origin.Publish(ctx, store, rec); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := nodes[rand.IntN(size)].Publish(ctx, rec); err != nil {
			b.Fatal(err)
		}
		seen := make([]bool, size)
		left := size
		var last time.Time
		timeout := time.After(30 * time.Second)
		for left > 0 {
			select {
			case e := <-events:
				if e.v == rec.Version && !seen[e.node] {
					seen[e.node] = true
					left--
					if e.at.After(last) {
						last = e.at
					}
				}
			case <-timeout:
				b.Fatalf("change reached only %d of %d nodes in 30s", size-left, size)
			}
		}
		took = append(took, last.Sub(start))
	}

	slices.Sort(took)
	pct := func(p float64) time.Duration {
		i := int(float64(len(took))*p+0.999999) - 1
		return took[max(0, min(i, len(took)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(pct(0.50)), "p50-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
	var total float64
	byPath := map[string]float64{}
	for _, n := range nodes {
		for _, p := range []string{"push", "relay", "gossip", "digest", "log"} {
			v := testutil.ToFloat64(n.m.applied.WithLabelValues(p))
			byPath[p] += v
			total += v
		}
	}
	for p, v := range byPath {
		if v > 0 {
			b.ReportMetric(100*v/total, p+"-%")
		}
	}
}
