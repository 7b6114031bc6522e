//go:build unix

package dataplane_test

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

var nodeWarmRecords = flag.String("nodewarm.records", "100000,1000000", "BenchmarkNodeWarm: namespace sizes, comma-separated")

// nodeWarmAbove is how many records of the benchmark's snapshot are newer
// than its version (a snapshot pass sees the changes of a few seconds
// above it): their seals are checked one by one, their states at the
// version come from the proof.
const nodeWarmAbove = 100

// nodeWarmOrigin is a directory origin holding one signed namespace, keys,
// as a signing publisher leaves it: a snapshot of n records at version V
// (values of 200 bytes, every record sealed, nodeWarmAbove of them newer
// than V), its proof (the checkpoint at V, signed, and the states at V of
// the keys above it) and that checkpoint as the latest.
type nodeWarmOrigin struct {
	n        int // records in the snapshot
	root     string
	store    *dir.Store
	verifier *sign.Verifier
	probe    []record.Record // a few records Open must have loaded
}

func buildNodeWarmOrigin(b *testing.B, n int) *nodeWarmOrigin {
	b.Helper()
	ctx := context.Background()
	root, err := os.MkdirTemp("", "dataplane-nodewarm-")
	if err != nil {
		b.Fatal(err)
	}
	store, err := dir.Open(root)
	if err != nil {
		b.Fatal(err)
	}
	s, err := sign.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		b.Fatal(err)
	}
	v, err := sign.NewVerifier(s.Public())
	if err != nil {
		b.Fatal(err)
	}
	V := record.MakeVersion(time.Now().Add(-time.Minute), 0)
	recs := make([]record.Record, n)
	p := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range p {
		wg.Go(func() {
			for i := w; i < n; i += p {
				val := make([]byte, 200)
				copy(val, fmt.Sprintf("value %d", i))
				recs[i] = s.Sign(record.Record{Namespace: "keys", Key: fmt.Sprintf("ks/%064x", i), Version: V - record.Version(n) + record.Version(i), Value: val})
			}
		})
	}
	wg.Wait()
	st := checkpoint.NewState("keys")
	for _, r := range recs {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			b.Fatal(err)
		}
	}
	var aboveKeys []string
	for i := range nodeWarmAbove {
		var r record.Record
		if i%2 == 0 {
			k := i * (n / nodeWarmAbove)
			r = s.Sign(record.Record{Namespace: "keys", Key: recs[k].Key, Version: V + record.Version(1+i), Value: []byte("changed after V")})
			recs[k] = r
		} else {
			r = s.Sign(record.Record{Namespace: "keys", Key: fmt.Sprintf("new/%08d", i), Version: V + record.Version(1+i), Value: []byte("created after V")})
			recs = append(recs, r)
		}
		aboveKeys = append(aboveKeys, r.Key)
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			b.Fatal(err)
		}
	}
	h, cnt, err := st.At(V)
	if err != nil {
		b.Fatal(err)
	}
	els, err := st.ElementsAt(V, aboveKeys)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	proof := &checkpoint.SnapshotProof{Checkpoint: &checkpoint.Checkpoint{Namespace: "keys", Version: V, Count: cnt, Hash: h, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}}
	for _, k := range aboveKeys {
		proof.Above = append(proof.Above, checkpoint.AtVersion{Key: k, Element: els[k]})
	}
	if err := proof.Checkpoint.Sign(s); err != nil {
		b.Fatal(err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	if err := store.PutSnapshot(ctx, record.Snapshot{Namespace: "keys", Version: V, Records: recs}); err != nil {
		b.Fatal(err)
	}
	if err := checkpoint.PutProof(ctx, store, proof); err != nil {
		b.Fatal(err)
	}
	if err := checkpoint.PutLatest(ctx, store, proof.Checkpoint); err != nil {
		b.Fatal(err)
	}
	o := &nodeWarmOrigin{n: len(recs), root: root, store: store, verifier: v}
	for i := 0; i < len(recs); i += max(1, len(recs)/16) {
		o.probe = append(o.probe, recs[i])
	}
	o.probe = append(o.probe, recs[len(recs)-1])
	return o
}

// open opens a node on o (signed: verifying, with o's trusted key and
// checkpoints required; dataDir: its local snapshot files, "" none) and
// checks that it warmed from the origin with every record. The caller
// closes it.
func (o *nodeWarmOrigin) open(b *testing.B, signed bool, dataDir string) *dataplane.Node {
	b.Helper()
	cfg := dataplane.Config{
		Origin:     o.store,
		Namespaces: []string{"keys"},
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(),
		Cache: cache.Config{
			Default:        cache.Window{Fresh: time.Hour, Stale: 24 * time.Hour},
			NegativeTTL:    5 * time.Second,
			MaxBytes:       8 << 30, // hold everything
			RefreshTimeout: 5 * time.Second,
		},
		WarmTimeout:           time.Minute,
		DataDir:               dataDir,
		LocalSnapshotInterval: time.Hour, // the file is written at Close
	}
	if signed {
		cfg.Verifier = o.verifier
		cfg.RequireCheckpoints = true
	}
	n, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if !n.Ready() {
		b.Fatalf("signed=%v: node not warmed", signed)
	}
	for _, r := range o.probe {
		e, ok := n.Peek("keys", r.Key)
		if !ok || e.Record.Version != r.Version {
			b.Fatalf("signed=%v: %s not loaded at %s (held: %v %s)", signed, r.Key, r.Version, ok, e.Record.Version)
		}
	}
	return n
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkNodeWarm is issue 23's signed warm-up end to end: dataplane.Open
// of a node on a directory origin holding one namespace of 100k and 1M
// signed records (see nodeWarmOrigin), until Open returns with the
// namespace loaded, two ways alternating within each iteration, the
// order swapped every iteration:
//
//   - unsigned: a node without a verifier (streams the snapshot into the
//     cache);
//   - signed: a node with the publisher's trusted key and
//     RequireCheckpoints: it reads the snapshot's proof, verifies the
//     checkpoint's signature and the seals above its version, and matches
//     the whole snapshot's state hash before it serves.
//
// start=cold is a node without a data directory; start=restart one whose
// data directory holds the local snapshot file (and checkpoint) its
// previous run wrote at Close (each way its own directory, written once
// before the timed iterations): the file is overlaid on the origin's
// snapshot. Close is not timed.
//
// Reported per iteration: wall and CPU seconds (every thread) of each
// way, and signed/unsigned of both. Run a few counts for the spread:
//
//	go test -run '^$' -bench 'BenchmarkNodeWarm' -benchtime 2x -count 5 -nodewarm.records 100000 . | tee warm.txt
//	go run golang.org/x/perf/cmd/benchstat@latest warm.txt
func BenchmarkNodeWarm(b *testing.B) {
	origins := map[int]*nodeWarmOrigin{}
	defer func() {
		for _, o := range origins {
			_ = os.RemoveAll(o.root)
		}
	}()
	for _, f := range strings.Split(*nodeWarmRecords, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < nodeWarmAbove {
			b.Fatalf("-nodewarm.records: %q", f)
		}
		for _, start := range []string{"cold", "restart"} {
			b.Run(fmt.Sprintf("records=%d/start=%s", n, start), func(b *testing.B) {
				o := origins[n]
				if o == nil {
					o = buildNodeWarmOrigin(b, n)
					origins[n] = o
				}
				var dirs [2]string
				if start == "restart" {
					for w := range dirs {
						dirs[w] = filepath.Join(o.root, fmt.Sprintf("data-%d", w))
						if _, err := os.Stat(dirs[w]); err != nil {
							o.open(b, w == 1, dirs[w]).Close() // writes the file
						}
					}
				}
				var wall, cpu [2]time.Duration
				i := 0
				b.ResetTimer()
				for b.Loop() {
					for k := range 2 {
						w := (i + k) % 2 // 1: signed
						runtime.GC()
						start, c0 := time.Now(), processCPU()
						node := o.open(b, w == 1, dirs[w])
						wall[w] += time.Since(start)
						cpu[w] += processCPU() - c0
						b.StopTimer()
						node.Close()
						b.StartTimer()
					}
					i++
				}
				per := func(d time.Duration) float64 { return d.Seconds() / float64(i) }
				b.ReportMetric(per(wall[0]), "unsigned-s")
				b.ReportMetric(per(wall[1]), "signed-s")
				b.ReportMetric(float64(wall[1])/float64(wall[0]), "signed/unsigned")
				b.ReportMetric(per(cpu[0]), "unsigned-cpu-s")
				b.ReportMetric(per(cpu[1]), "signed-cpu-s")
				b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "signed/unsigned-cpu")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
