package sign

import (
	"bytes"
	"testing"

	"github.com/dataplane/dataplane/record"
)

// fuzzRecords are the records the fuzz key signed: the only ones a
// Verifier trusting that key may ever accept.
func fuzzRecords(t testing.TB) []record.Record {
	s := fixedSigner(t, 1)
	return []record.Record{
		s.Sign(sample()),
		s.Sign(record.Record{Namespace: "routes", Key: "gone.example.com", Version: 1 << 40, Tombstone: true}),
		s.Sign(record.Record{Namespace: "keys", Key: "ks/00ff", Value: []byte(`{"enabled":true}`), Version: 42}),
	}
}

// FuzzVerify decodes arbitrary bytes as a record (and its change) and
// verifies it against the fuzz key: nothing panics, and nothing is accepted
// but exactly what the key signed (seeds in testdata/fuzz/FuzzVerify are
// those records' encodings, signed and unsigned, and a few forgeries).
func FuzzVerify(f *testing.F) {
	signed := fuzzRecords(f)
	for _, r := range signed {
		b, err := record.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v, err := NewVerifier(fixedSigner(f, 1).Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := record.Unmarshal(b)
		if err != nil {
			return
		}
		if v.VerifyChange(r.Change()) == nil {
			ok := false
			for _, s := range signed {
				ok = ok || (s.Namespace == r.Namespace && s.Key == r.Key && s.Version == r.Version && s.Tombstone == r.Tombstone && s.Seal.Digest == r.Seal.Digest)
			}
			if !ok {
				t.Fatalf("accepted a change nobody signed: %+v", r.Change())
			}
		}
		if v.VerifyRecord(r) == nil {
			ok := false
			for _, s := range signed {
				ok = ok || (s.Namespace == r.Namespace && s.Key == r.Key && s.Version == r.Version && s.Tombstone == r.Tombstone && bytes.Equal(s.Value, r.Value))
			}
			if !ok {
				t.Fatalf("accepted a record nobody signed: %+v", r)
			}
		}
	})
}
