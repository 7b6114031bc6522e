package checkpoint_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/statehash"
)

// BenchmarkCheckpointSign is the issuer's cost per checkpoint.
func BenchmarkCheckpointSign(b *testing.B) {
	s, _ := keys(b)
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: 5, IssuedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Sign(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckpointVerify is a node's cost per checkpoint received:
// signature, clocks, rollback.
func BenchmarkCheckpointVerify(b *testing.B) {
	s, keysV := keys(b)
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: ver(0), IssuedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	if err := c.Sign(s); err != nil {
		b.Fatal(err)
	}
	v := &checkpoint.Verifier{Keys: keysV, Now: func() time.Time { return t0 }}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(c, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifySnapshot is a signed warm-up: a snapshot of n records
// (200-byte values, each signed) verified whole against its proof, one
// signature plus hashing (the SHA-256 of every value and its LtHash).
// Compare with n × sign's BenchmarkVerifyRecord, the per-record way.
// cpu-ns/record is CPU time (both cores), not inflated by load.
func BenchmarkVerifySnapshot(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			s, keysV := keys(b)
			V := ver(0)
			val := make([]byte, 200)
			recs := make([]record.Record, n)
			var h statehash.Hash
			for i := range recs {
				// Sealing a million records would take minutes: the seals
				// are not looked at below V, so one shared seal will do.
				recs[i] = record.Record{Namespace: "keys", Key: fmt.Sprintf("ks/%064x", i), Version: V - record.Version(i), Value: val}
				h.Add(statehash.ElementOf(recs[i]))
			}
			c := &checkpoint.Checkpoint{Namespace: "keys", Version: V, Count: uint64(n), Hash: h, IssuedAt: t0, ExpiresAt: t0.Add(time.Minute)}
			if err := c.Sign(s); err != nil {
				b.Fatal(err)
			}
			snap := record.Snapshot{Namespace: "keys", Version: V, Records: recs}
			proof := &checkpoint.SnapshotProof{Checkpoint: c}
			v := &checkpoint.Verifier{Keys: keysV, Now: func() time.Time { return t0 }}
			c0 := cpuTime()
			for b.Loop() {
				if err := v.VerifySnapshot(snap, proof, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/float64(n), "cpu-ns/record")
		})
	}
}
