package checkpoint_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

func keys(t testing.TB) (*sign.Signer, *sign.Verifier) {
	t.Helper()
	pub, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

func ver(ms int) record.Version {
	return record.MakeVersion(t0.Add(time.Duration(ms)*time.Millisecond), 0)
}

func rec(s *sign.Signer, key string, v record.Version, value string) record.Record {
	r := record.Record{Namespace: "keys", Key: key, Version: v, Value: []byte(value)}
	if value == "" {
		r.Tombstone = true
	}
	if s != nil {
		r = s.Sign(r)
	}
	return r
}

// stateOf hashes recs from scratch: the reference every incremental path
// is compared with.
func stateOf(recs []record.Record, floor record.Version) (statehash.Hash, uint64) {
	var h statehash.Hash
	var n uint64
	for _, r := range recs {
		if r.Tombstone && r.Version < floor {
			continue
		}
		h.Add(statehash.ElementOf(r))
		n++
	}
	return h, n
}

func signed(t testing.TB, s *sign.Signer, ns string, v record.Version, h statehash.Hash, n uint64, issued time.Time) *checkpoint.Checkpoint {
	t.Helper()
	c := &checkpoint.Checkpoint{Namespace: ns, Version: v, Hash: h, Count: n, IssuedAt: issued, ExpiresAt: issued.Add(time.Minute)}
	if err := c.Sign(s); err != nil {
		t.Fatal(err)
	}
	return c
}

func nsRecords(s *sign.Signer, n int, v record.Version) []record.Record {
	out := make([]record.Record, n)
	for i := range out {
		out[i] = rec(s, fmt.Sprintf("k%05d", i), v+record.Version(i), fmt.Sprint("value ", i))
	}
	return out
}

func statehashElement(key string) statehash.Element {
	return statehash.Element{Namespace: "keys", Key: key, Version: 1}
}
