package sign

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/record"
)

// fixedSigner returns a Signer with a key derived from seed byte b, so that
// fuzz seeds and tests are reproducible.
func fixedSigner(t testing.TB, b byte) *Signer {
	t.Helper()
	s, err := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample() record.Record {
	return record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte(`{"upstreams":["http://a"]}`), Version: record.MakeVersion(time.Unix(1_700_000_000, 0), 3)}
}

func TestVerify(t *testing.T) {
	pub, other := fixedSigner(t, 1), fixedSigner(t, 2)
	v, err := NewVerifier(pub.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := pub.Sign(sample())
	tomb := pub.Sign(record.Record{Namespace: "routes", Key: "gone", Version: 7, Tombstone: true})
	mutate := func(f func(r *record.Record)) record.Record {
		r := good
		r.Value = append([]byte(nil), good.Value...)
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		rec  record.Record
		want error // nil: accepted
	}{
		{"signed record", good, nil},
		{"signed tombstone", tomb, nil},
		{"unsigned", mutate(func(r *record.Record) { r.Seal = nil }), ErrUnsigned},
		{"untrusted key", other.Sign(sample()), ErrUntrustedKey},
		{"other value", mutate(func(r *record.Record) { r.Value[0] = '[' }), ErrDigestMismatch},
		{"value dropped", mutate(func(r *record.Record) { r.Value = nil }), ErrDigestMismatch},
		{"other version", mutate(func(r *record.Record) { r.Version++ }), ErrBadSignature},
		{"other key", mutate(func(r *record.Record) { r.Key = "b.example.com" }), ErrBadSignature},
		{"other namespace", mutate(func(r *record.Record) { r.Namespace = "keys" }), ErrBadSignature},
		{"turned into a tombstone", mutate(func(r *record.Record) { r.Tombstone = true }), ErrBadSignature},
		{"key id of a trusted key on another key's signature", func() record.Record {
			r := other.Sign(sample())
			s := *r.Seal
			s.KeyID = pub.KeyID()
			r.Seal = &s
			return r
		}(), ErrBadSignature},
		{"signature bit flipped", func() record.Record {
			r := good
			s := *r.Seal
			s.Sig[10] ^= 1
			r.Seal = &s
			return r
		}(), ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyRecord(tc.rec)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRecord = %v, want %v", err, tc.want)
			}
		})
	}
	// A change (no value) verifies with the Seal alone, and its fields are
	// covered the same way.
	if err := v.VerifyChange(good.Change()); err != nil {
		t.Fatalf("VerifyChange of a signed change: %v", err)
	}
	ch := good.Change()
	ch.Version++
	if err := v.VerifyChange(ch); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyChange of a bumped version = %v, want ErrBadSignature", err)
	}
	if err := v.VerifyChange(record.Change{Namespace: "routes", Key: "x", Version: 1}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("VerifyChange unsigned = %v", err)
	}
	if Reason(fmt.Errorf("wrapped: %w", ErrUntrustedKey)) != "untrusted_key" {
		t.Fatal("Reason does not see through wrapping")
	}
}

// TestSealSurvivesEncodings: a signed record still verifies after the
// record encoding (format 2), a snapshot, and a Known entry of a snapshot.
func TestSealSurvivesEncodings(t *testing.T) {
	pub := fixedSigner(t, 1)
	v, _ := NewVerifier(pub.Public())
	rec := pub.Sign(sample())
	b, err := record.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != 2 {
		t.Fatalf("signed record written in format %d, want 2", b[2])
	}
	back, err := record.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyRecord(back); err != nil {
		t.Fatalf("after Marshal/Unmarshal: %v", err)
	}
	unsigned, _ := record.Marshal(sample())
	if unsigned[2] != 1 {
		t.Fatalf("unsigned record written in format %d, want 1", unsigned[2])
	}
	if r, err := record.Unmarshal(unsigned); err != nil || r.Seal != nil {
		t.Fatalf("format 1 decodes as %+v, %v; want unsigned", r, err)
	}
	big := pub.Sign(record.Record{Namespace: "routes", Key: "z", Value: []byte("v"), Version: 9})
	snap := record.Snapshot{Namespace: "routes", Version: 10, Records: []record.Record{rec}, Known: []record.Change{big.Change()}}
	sb, err := record.MarshalSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if sb[2] != 3 {
		t.Fatalf("snapshot with a sealed Known entry in format %d, want 3", sb[2])
	}
	got, err := record.UnmarshalSnapshot(sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyRecord(got.Records[0]); err != nil {
		t.Fatalf("snapshot record: %v", err)
	}
	if err := v.VerifyChange(got.Known[0]); err != nil {
		t.Fatalf("snapshot known entry: %v", err)
	}
	sr, err := record.NewSnapshotReader(bytes.NewReader(sb))
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := sr.Next()
		if err != nil {
			break
		}
		if err := v.VerifyRecord(r); err != nil {
			t.Fatalf("streamed record: %v", err)
		}
	}
	if k := sr.Known(); len(k) != 1 || v.VerifyChange(k[0]) != nil {
		t.Fatalf("streamed known = %+v", k)
	}
}

func TestRotation(t *testing.T) {
	a, b := fixedSigner(t, 1), fixedSigner(t, 2)
	v, _ := NewVerifier(a.Public())
	ra, rb := a.Sign(sample()), b.Sign(sample())
	steps := []struct {
		trust  []ed25519.PublicKey
		wantA  bool
		wantB  bool
		reason string
	}{
		{[]ed25519.PublicKey{a.Public()}, true, false, "old key only"},
		{[]ed25519.PublicKey{a.Public(), b.Public()}, true, true, "both"},
		{[]ed25519.PublicKey{b.Public()}, false, true, "new key only"},
	}
	for _, s := range steps {
		if err := v.Trust(s.trust...); err != nil {
			t.Fatal(err)
		}
		if got := v.VerifyRecord(ra) == nil; got != s.wantA {
			t.Errorf("%s: old-key record accepted = %v", s.reason, got)
		}
		if got := v.VerifyRecord(rb) == nil; got != s.wantB {
			t.Errorf("%s: new-key record accepted = %v", s.reason, got)
		}
	}
	if err := v.Trust(); err == nil {
		t.Fatal("Trust() with no keys accepted")
	}
	if len(v.KeyIDs()) != 1 || v.KeyIDs()[0] != b.KeyID() {
		t.Fatal("a failed Trust changed the set")
	}
}

func TestKeysText(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	text := EncodePrivateKey(priv)
	file := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(file, []byte(text+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{file, "base64:" + text} {
		s, err := LoadSigner(spec)
		if err != nil {
			t.Fatalf("LoadSigner: %v", err)
		}
		if !s.Public().Equal(pub) {
			t.Fatal("loaded another key")
		}
		for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprintf("%v", *s)} {
			if strings.Contains(out, text) || strings.Contains(out, string(priv.Seed())) {
				t.Fatalf("printing the signer shows the key: %q", out)
			}
		}
	}
	if _, err := LoadSigner("base64:!!" + text); err == nil || strings.Contains(err.Error(), text) {
		t.Fatalf("bad key: err %v (must fail without quoting the key)", err)
	}
	v, err := ParseTrusted("# publisher keys\n" + EncodePublicKey(pub) + ", " + EncodePublicKey(fixedSigner(t, 3).Public()) + "\n")
	if err != nil || len(v.KeyIDs()) != 2 {
		t.Fatalf("ParseTrusted: %v", err)
	}
	for _, blank := range []string{"", " \n\t\r\n"} {
		if v, err := ParseTrusted(blank); v != nil || err != nil {
			t.Fatalf("blank list %q: %v, %v; want nil, nil (signing off)", blank, v, err)
		}
	}
	for _, none := range []string{" \n# none\n", "# publisher keys\n\n#" + EncodePublicKey(pub) + "\n", ", ,"} {
		if v, err := ParseTrusted(none); v != nil || !errors.Is(err, ErrNoTrustedKeys) {
			t.Fatalf("list %q holding no key: %v, %v; want ErrNoTrustedKeys", none, v, err)
		}
	}
	if _, err := ParseTrusted("notbase64"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad public key: %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	s := fixedSigner(b, 1)
	r := sample()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Sign(r)
	}
}

// BenchmarkVerifyRecord is the cost a node pays per record with a value
// (gossip inline, snapshot, origin read): SHA-256 of the value and one
// ed25519 verification.
func BenchmarkVerifyRecord(b *testing.B) {
	for _, size := range []int{64, 512, 4096} {
		b.Run(fmt.Sprintf("value=%d", size), func(b *testing.B) {
			s := fixedSigner(b, 1)
			v, _ := NewVerifier(s.Public())
			r := sample()
			r.Value = bytes.Repeat([]byte("x"), size)
			r = s.Sign(r)
			b.ReportAllocs()
			for b.Loop() {
				if err := v.VerifyRecord(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyChange is the cost per invalidation or log entry.
func BenchmarkVerifyChange(b *testing.B) {
	s := fixedSigner(b, 1)
	v, _ := NewVerifier(s.Public())
	c := s.Sign(sample()).Change()
	b.ReportAllocs()
	for b.Loop() {
		if err := v.VerifyChange(c); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEmptyVerifierRefuses: a nil or zero Verifier (a typed nil stored in
// a config's interface field) refuses every signed record instead of
// panicking on the goroutine that received it.
func TestEmptyVerifierRefuses(t *testing.T) {
	rec := fixedSigner(t, 1).Sign(record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte("v"), Version: 1})
	for name, v := range map[string]*Verifier{"nil": nil, "zero": {}} {
		if err := v.VerifyRecord(rec); !errors.Is(err, ErrUntrustedKey) {
			t.Errorf("%s Verifier: VerifyRecord = %v, want ErrUntrustedKey", name, err)
		}
		if err := v.VerifyChange(rec.Change()); !errors.Is(err, ErrUntrustedKey) {
			t.Errorf("%s Verifier: VerifyChange = %v, want ErrUntrustedKey", name, err)
		}
	}
}
