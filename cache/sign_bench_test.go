package cache

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// benchSigner is a fixed key, so the benchmarks need no randomness.
func benchSigner(b *testing.B) (*sign.Signer, *sign.Verifier) {
	s, err := sign.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		b.Fatal(err)
	}
	v, _ := sign.NewVerifier(s.Public())
	return s, v
}

// signedRecords returns n records of 200-byte values in namespace keys,
// signed by s (unsigned if s is nil).
func signedRecords(s *sign.Signer, n int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i] = record.Record{Namespace: "keys", Key: fmt.Sprintf("ks/%064x", i), Value: make([]byte, 200), Version: record.Version(i + 1)}
		if s != nil {
			recs[i] = s.Sign(recs[i])
		}
	}
	return recs
}

func benchCache(b *testing.B, v *sign.Verifier) *Cache {
	o := DefaultOptions()
	o.Default.Fresh = time.Hour
	o.Logger = slog.New(slog.DiscardHandler)
	o.Complete = []string{"keys"}
	if v != nil {
		o.Verifier = v
	}
	c, err := New(mem.New(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// BenchmarkApplySigned is the apply path (Cache.Apply of a new key, as
// from gossip or a snapshot) with signature verification off and on: the
// difference is the cost of verifying one record.
//
//	go test -run '^$' -bench BenchmarkApplySigned -benchtime 5000x ./cache/
func BenchmarkApplySigned(b *testing.B) {
	s, v := benchSigner(b)
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("verify=%v", on), func(b *testing.B) {
			var verifier *sign.Verifier
			if on {
				verifier = v
			}
			recs := signedRecords(s, b.N)
			c := benchCache(b, verifier)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !c.Apply(recs[i]) {
					b.Fatal("not applied")
				}
			}
		})
	}
}

// BenchmarkWarmSigned is a warm-up: Cache.Reload of a 100,000-record
// snapshot, verification off and on. Run it once:
//
//	go test -run '^$' -bench BenchmarkWarmSigned -benchtime 1x ./cache/
func BenchmarkWarmSigned(b *testing.B) {
	s, v := benchSigner(b)
	snap := record.Snapshot{Namespace: "keys", Version: 100_000, Records: signedRecords(s, 100_000)}
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("records=100000/verify=%v", on), func(b *testing.B) {
			var verifier *sign.Verifier
			if on {
				verifier = v
			}
			for b.Loop() {
				b.StopTimer()
				c := benchCache(b, verifier)
				b.StartTimer()
				if news := c.Reload(snap); len(news) != len(snap.Records) {
					b.Fatalf("%d of %d records applied", len(news), len(snap.Records))
				}
			}
		})
	}
}
