package checkpoint_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// warmCase is a signed namespace as an origin holds it: the encoded
// snapshot at V (every record sealed, values of 200 bytes, like a keys
// record), some of whose records are newer than V, and the encoded proof
// the publisher's issuer writes for it (a checkpoint.State fed every
// change, At(V), ElementsAt for the records above V, a signed checkpoint).
type warmCase struct {
	n         int
	snapBytes []byte
	proof     []byte
	verifier  *sign.Verifier
	now       time.Time
}

var warmPerRecord = flag.Bool("warm-per-record", true, "BenchmarkSignedWarm: measure the per-record way too")

// warmAbove is how many records of a warm-up snapshot are newer than its
// version: a snapshot pass sees the changes of a few seconds above it.
const warmAbove = 100

var (
	warmCasesMu sync.Mutex
	warmCases   = map[int]*warmCase{}
)

// signedWarmCase builds (once per size per process) a signed namespace of
// n records. Sealing is spread over every core.
func signedWarmCase(b *testing.B, n int) *warmCase {
	warmCasesMu.Lock()
	defer warmCasesMu.Unlock()
	if c := warmCases[n]; c != nil {
		return c
	}
	s, err := sign.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		b.Fatal(err)
	}
	keysV, _ := sign.NewVerifier(s.Public())
	V := ver(0)
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
	// The issuer's state: every record at or below V, then the changes
	// above V (an update of warmAbove/2 keys, warmAbove/2 new keys).
	st := checkpoint.NewState("keys")
	for _, r := range recs {
		if _, err := st.Apply(statehash.ElementOf(r)); err != nil {
			b.Fatal(err)
		}
	}
	var aboveKeys []string
	for i := range warmAbove {
		var r record.Record
		if i%2 == 0 {
			k := i * (n / warmAbove)
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
	now := V.Time().Add(2 * time.Second)
	proof := &checkpoint.SnapshotProof{Checkpoint: &checkpoint.Checkpoint{Namespace: "keys", Version: V, Count: cnt, Hash: h, IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute)}}
	for _, k := range aboveKeys {
		proof.Above = append(proof.Above, checkpoint.AtVersion{Key: k, Element: els[k]})
	}
	if err := proof.Checkpoint.Sign(s); err != nil {
		b.Fatal(err)
	}
	pb, err := proof.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	sb, err := record.MarshalSnapshot(record.Snapshot{Namespace: "keys", Version: V, Records: recs})
	if err != nil {
		b.Fatal(err)
	}
	c := &warmCase{n: len(recs), snapBytes: sb, proof: pb, verifier: keysV, now: now}
	warmCases[n] = c
	return c
}

func warmCache(b *testing.B, v *sign.Verifier) *cache.Cache {
	o := cache.DefaultOptions()
	o.Default.Fresh = time.Hour
	o.MaxBytes = 4 << 30 // hold everything
	o.Logger = slog.New(slog.DiscardHandler)
	o.Complete = []string{"keys"}
	if v != nil {
		o.Verifier = v // an interface: a nil *sign.Verifier in it would not be nil
	}
	c, err := cache.New(mem.New(), o)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// decode is the first step of every way: the snapshot's bytes, as read
// from the origin, to records.
func (wc *warmCase) decode(b *testing.B) record.Snapshot {
	snap, err := record.UnmarshalSnapshot(wc.snapBytes)
	if err != nil {
		b.Fatal(err)
	}
	return snap
}

func (wc *warmCase) load(b *testing.B, c *cache.Cache, snap record.Snapshot) {
	if got := c.ApplyBatch(snap.Records); got != wc.n {
		b.Fatalf("%d of %d records applied", got, wc.n)
	}
}

// The three ways of warming a node's cache from a signed snapshot, each
// from the encoded snapshot to a loaded cache.
func (wc *warmCase) unsigned(b *testing.B) {
	c := warmCache(b, nil)
	defer c.Close()
	wc.load(b, c, wc.decode(b))
}

func (wc *warmCase) withProof(b *testing.B) {
	snap := wc.decode(b)
	proof, err := checkpoint.UnmarshalProof(wc.proof)
	if err != nil {
		b.Fatal(err)
	}
	v := &checkpoint.Verifier{Keys: wc.verifier, Now: func() time.Time { return wc.now }}
	if err := v.VerifySnapshot(snap, proof, nil); err != nil {
		b.Fatal(err)
	}
	c := warmCache(b, nil) // proven whole: no record is checked again
	defer c.Close()
	wc.load(b, c, snap)
}

// withProofStreamed decodes the snapshot as a stream (record.
// SnapshotReader) and hashes each batch of records on the other cores as
// soon as it is decoded (Verifier.StartSnapshot), then loads.
func (wc *warmCase) withProofStreamed(b *testing.B) {
	proof, err := checkpoint.UnmarshalProof(wc.proof)
	if err != nil {
		b.Fatal(err)
	}
	sr, err := record.NewSnapshotReader(bytes.NewReader(wc.snapBytes))
	if err != nil {
		b.Fatal(err)
	}
	v := &checkpoint.Verifier{Keys: wc.verifier, Now: func() time.Time { return wc.now }}
	sc, err := v.StartSnapshot(sr.Namespace(), sr.Version(), proof, nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]record.Record, 0, sr.Remaining())
	for {
		r, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, r)
		if len(recs)%streamBatch == 0 {
			sc.Add(recs[len(recs)-streamBatch:])
		}
	}
	sc.Add(recs[len(recs)-len(recs)%streamBatch:])
	if err := sc.Finish(); err != nil {
		b.Fatal(err)
	}
	c := warmCache(b, nil)
	defer c.Close()
	wc.load(b, c, record.Snapshot{Namespace: sr.Namespace(), Version: sr.Version(), Records: recs})
}

// withProofOverlapped is withProofStreamed that also loads each batch as
// soon as the check has taken it, so that hashing runs beside decoding
// and loading, and the match comes at the end (Finish). A node may do
// this only where nothing it loads is served before the match (a cold
// start: dataplane.Open returns after warm-up) and it can drop what it
// loaded when the match fails.
func (wc *warmCase) withProofOverlapped(b *testing.B) {
	proof, err := checkpoint.UnmarshalProof(wc.proof)
	if err != nil {
		b.Fatal(err)
	}
	sr, err := record.NewSnapshotReader(bytes.NewReader(wc.snapBytes))
	if err != nil {
		b.Fatal(err)
	}
	v := &checkpoint.Verifier{Keys: wc.verifier, Now: func() time.Time { return wc.now }}
	sc, err := v.StartSnapshot(sr.Namespace(), sr.Version(), proof, nil)
	if err != nil {
		b.Fatal(err)
	}
	c := warmCache(b, nil)
	defer c.Close()
	batch := make([]record.Record, 0, streamBatch)
	applied := 0
	flush := func() {
		sc.Add(batch)
		applied += c.ApplyBatch(batch)
		clear(batch) // as the node's warm-up does: Add copied the batch
		batch = batch[:0]
	}
	for {
		r, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if batch = append(batch, r); len(batch) == streamBatch {
			flush()
		}
	}
	flush()
	if err := sc.Finish(); err != nil {
		b.Fatal(err)
	}
	if applied != wc.n {
		b.Fatalf("%d of %d records applied", applied, wc.n)
	}
}

// streamBatch is how many decoded records withProofStreamed hands to the
// check at a time.
const streamBatch = 1024

func (wc *warmCase) perRecord(b *testing.B) {
	c := warmCache(b, wc.verifier) // ApplyBatch verifies every seal, on every core
	defer c.Close()
	wc.load(b, c, wc.decode(b))
}

// BenchmarkSignedWarm is a node's warm-up of a signed namespace of 100k
// and 1M records (issues 23, 24), five ways, in rotating order within each
// iteration so that the ratios come from one run:
//
//   - unsigned: decode the snapshot (record.UnmarshalSnapshot), load the
//     cache; the base;
//   - proof: decode snapshot and proof, checkpoint.Verifier.VerifySnapshot,
//     load;
//   - proof-streamed: decode as a stream (record.SnapshotReader), hash
//     each batch on every core while decoding the next
//     (Verifier.StartSnapshot), match, then load;
//   - proof-overlapped: the same, loading each batch as soon as it is
//     handed to the check, matching at the end;
//   - per-record: decode, load with cache.Options.Verifier checking every
//     seal on every core.
//
// Reported: wall seconds per way (…-s), each signed way's ratio to
// unsigned, and CPU seconds of every thread per way (…-cpu-s), which
// other load inflates less than wall time. The cache is the node's
// (cache.Cache.ApplyBatch, as the node's warm-up calls it); the node
// itself (package dataplane) is not involved.
//
//	go test -run '^$' -bench BenchmarkSignedWarm -benchtime 3x -timeout 60m ./checkpoint/
//
// -warm-per-record=false leaves the per-record way out (at 1M it takes
// about a minute of CPU an iteration).
func BenchmarkSignedWarm(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			wc := signedWarmCase(b, n)
			var tu, tp, ts, to, tr time.Duration
			var cu, cp, cs, co, cr time.Duration
			ways := []struct {
				f    func(*testing.B)
				d, c *time.Duration
			}{{wc.unsigned, &tu, &cu}, {wc.withProof, &tp, &cp}, {wc.withProofStreamed, &ts, &cs}, {wc.withProofOverlapped, &to, &co}}
			if *warmPerRecord {
				ways = append(ways, struct {
					f    func(*testing.B)
					d, c *time.Duration
				}{wc.perRecord, &tr, &cr})
			}
			i := 0
			b.ResetTimer()
			for b.Loop() {
				for k := range ways {
					w := ways[(i+k)%len(ways)] // rotate the order
					runtime.GC()
					start, c0 := time.Now(), cpuTime()
					w.f(b)
					*w.d += time.Since(start)
					*w.c += cpuTime() - c0
				}
				i++
			}
			per := func(d time.Duration) float64 { return d.Seconds() / float64(i) }
			b.ReportMetric(per(tu), "unsigned-s")
			b.ReportMetric(per(tp), "proof-s")
			b.ReportMetric(per(ts), "proof-streamed-s")
			b.ReportMetric(per(to), "proof-overlapped-s")
			b.ReportMetric(float64(tp)/float64(tu), "proof/unsigned")
			b.ReportMetric(float64(ts)/float64(tu), "proof-streamed/unsigned")
			b.ReportMetric(float64(to)/float64(tu), "proof-overlapped/unsigned")
			b.ReportMetric(per(cu), "unsigned-cpu-s")
			b.ReportMetric(per(cp), "proof-cpu-s")
			b.ReportMetric(per(cs), "proof-streamed-cpu-s")
			b.ReportMetric(per(co), "proof-overlapped-cpu-s")
			if *warmPerRecord {
				b.ReportMetric(per(tr), "per-record-s")
				b.ReportMetric(float64(tr)/float64(tu), "per-record/unsigned")
				b.ReportMetric(per(cr), "per-record-cpu-s")
			}
		})
	}
}

// BenchmarkWarmParts are the parts of BenchmarkSignedWarm alone: decoding
// the snapshot (record.UnmarshalSnapshot), checkpoint.Verifier.
// VerifySnapshot of the decoded snapshot (one signature, the seals of the
// records above V, the SHA-256 and state hash of every record, on every
// core), and sign.Verifier.VerifyRecord of one record (per-record
// verification's unit cost, one core). cpu-ns/record is CPU time of every
// thread, which load does not inflate as it does wall time.
//
//	go test -run '^$' -bench BenchmarkWarmParts -benchtime 3x ./checkpoint/
func BenchmarkWarmParts(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		wc := signedWarmCase(b, n)
		b.Run(fmt.Sprintf("records=%d/decode", n), func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				wc.decode(b)
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/float64(wc.n), "cpu-ns/record")
		})
		b.Run(fmt.Sprintf("records=%d/VerifySnapshot", n), func(b *testing.B) {
			snap := wc.decode(b)
			proof, err := checkpoint.UnmarshalProof(wc.proof)
			if err != nil {
				b.Fatal(err)
			}
			v := &checkpoint.Verifier{Keys: wc.verifier, Now: func() time.Time { return wc.now }}
			runtime.GC()
			b.ResetTimer()
			c0 := cpuTime()
			for b.Loop() {
				if err := v.VerifySnapshot(snap, proof, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/float64(wc.n), "cpu-ns/record")
		})
	}
	b.Run("VerifyRecord", func(b *testing.B) {
		wc := signedWarmCase(b, 100_000)
		snap := wc.decode(b)
		b.ResetTimer()
		i := 0
		for b.Loop() {
			if err := wc.verifier.VerifyRecord(snap.Records[i%len(snap.Records)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
