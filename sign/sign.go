// Package sign provides the publisher's signatures over records (ed25519) and
// their verification by every node: trust comes from the publisher, not the
// transport (DESIGN decision 8).
//
// A Signer holds one private key and puts a record.Seal on each record it
// signs: the key id, the SHA-256 digest of the value and an ed25519
// signature over a canonical encoding of namespace, key, version, tombstone
// flag and that digest (see Message). Because the digest is signed rather
// than the value, a change that travels without its value (an invalidation,
// a change log entry) carries the same Seal and is verified without it.
//
// A Verifier holds a set of trusted public keys, each named by its key id
// (the first 8 bytes of the SHA-256 of the public key). Trusting several keys
// at once is how keys rotate with no downtime: trust old and new on every
// node, switch the publishers to the new key, wait until nothing signed with
// the old key is left anywhere (the next origin snapshots and the log
// horizon), then drop the old key.
//
// Signing is opt-in: a node configured without a Verifier accepts
// everything, signed or not, as it always did. A node with one refuses
// (drops and counts) every record and change that is unsigned, signed by a
// key it does not trust, or whose signature or digest does not match.
//
// What a signature does not cover: the wall clock (a version far in the
// future is refused separately by MaxFutureSkew) and freshness (a replayed
// old signed change is harmless because every path applies by version).
package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/dataplane/dataplane/record"
)

// Sentinel errors of verification; Reason names each for metrics.
var (
	// ErrUnsigned means a record or change carries no Seal.
	ErrUnsigned = errors.New("unsigned")
	// ErrUntrustedKey means the Seal names a key the Verifier does not hold.
	ErrUntrustedKey = errors.New("signed by an untrusted key")
	// ErrBadSignature means the signature does not match the change.
	ErrBadSignature = errors.New("bad signature")
	// ErrDigestMismatch means the value does not hash to the signed digest.
	ErrDigestMismatch = errors.New("value does not match the signed digest")
	// ErrBadKey means a key could not be parsed.
	ErrBadKey = errors.New("bad key")
	// ErrNoTrustedKeys means a list of trusted keys that is not blank
	// holds no key (only comments or blank lines): turning signing off
	// takes an empty list, never a list that lost its keys.
	ErrNoTrustedKeys = errors.New("trusted keys: the list holds no key (only comments or blank lines); leave it empty to turn signing off")
)

// Reason returns the metric label for a verification error: "unsigned",
// "untrusted_key", "bad_signature", "digest_mismatch", or "invalid".
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrUnsigned):
		return "unsigned"
	case errors.Is(err, ErrUntrustedKey):
		return "untrusted_key"
	case errors.Is(err, ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, ErrDigestMismatch):
		return "digest_mismatch"
	}
	return "invalid"
}

// KeyID names a public key: the first 8 bytes of its SHA-256.
type KeyID [record.SealKeyIDLen]byte

// String formats id as 16 hex digits.
func (id KeyID) String() string { return fmt.Sprintf("%x", id[:]) }

// IDOf returns the key id of pub.
func IDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

// Digest returns the SHA-256 of a value, as signed in a Seal.
func Digest(value []byte) [record.SealDigestLen]byte { return sha256.Sum256(value) }

// messagePrefix separates these signatures from any other use of the key.
const messagePrefix = "dataplane record seal v1\x00"

// maxMessageLen bounds Message's output.
const maxMessageLen = len(messagePrefix) + 2*binary.MaxVarintLen32 + record.MaxNamespaceLen + record.MaxKeyLen + 8 + 1 + record.SealDigestLen

// Message returns the canonical bytes a Seal signs:
//
//	"dataplane record seal v1" 0x00 | uvarint len + namespace |
//	uvarint len + key | version (8 bytes, big endian) |
//	tombstone (1 byte, 0 or 1) | SHA-256 of the value (32 bytes)
func Message(ns, key string, v record.Version, tomb bool, digest *[record.SealDigestLen]byte) []byte {
	return appendMessage(make([]byte, 0, maxMessageLen), ns, key, v, tomb, digest)
}

func appendMessage(b []byte, ns, key string, v record.Version, tomb bool, digest *[record.SealDigestLen]byte) []byte {
	b = append(b, messagePrefix...)
	b = binary.AppendUvarint(b, uint64(len(ns)))
	b = append(b, ns...)
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint64(b, uint64(v))
	if tomb {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, digest[:]...)
}

// Signer signs records with one ed25519 private key. It never prints or
// logs the key: String and the fmt verbs show the key id only. Safe for
// concurrent use.
type Signer struct {
	priv ed25519.PrivateKey
	id   KeyID
}

// NewSigner returns a Signer for priv (ed25519.PrivateKeySize bytes).
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d", ErrBadKey, len(priv), ed25519.PrivateKeySize)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{priv: priv, id: IDOf(pub)}, nil
}

// KeyID returns the id of the Signer's key.
func (s *Signer) KeyID() KeyID { return s.id }

// Public returns the Signer's public key, to be trusted by nodes.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// String names the Signer by key id; it never shows the key. (Value
// receivers, so that printing a Signer value does not show it either.)
func (s Signer) String() string { return "sign.Signer(key " + s.id.String() + ")" }

// GoString is String, so %#v does not print the key either.
func (s Signer) GoString() string { return s.String() }

// LogValue is String, for log/slog.
func (s Signer) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Seal returns the Seal of the state ns/key at version v (tombstone or
// value).
func (s *Signer) Seal(ns, key string, v record.Version, tomb bool, value []byte) *record.Seal {
	seal := &record.Seal{KeyID: s.id, Digest: Digest(value)}
	var buf [maxMessageLen]byte
	msg := appendMessage(buf[:0], ns, key, v, tomb, &seal.Digest)
	copy(seal.Sig[:], ed25519.Sign(s.priv, msg))
	return seal
}

// Sign returns r with its Seal set (replacing any).
func (s *Signer) Sign(r record.Record) record.Record {
	r.Seal = s.Seal(r.Namespace, r.Key, r.Version, r.Tombstone, r.Value)
	return r
}

// Verifier checks Seals against a set of trusted public keys, which Trust
// replaces at run time (a running node rotates keys without a restart).
// Safe for concurrent use.
type Verifier struct {
	keys atomic.Pointer[map[KeyID]ed25519.PublicKey]
}

// NewVerifier returns a Verifier trusting pubs (at least one; duplicates
// are fine).
func NewVerifier(pubs ...ed25519.PublicKey) (*Verifier, error) {
	v := new(Verifier)
	if err := v.Trust(pubs...); err != nil {
		return nil, err
	}
	return v, nil
}

// Trust replaces the set of trusted keys with pubs (at least one). Every
// verification that starts after it returns uses the new set. On error the
// set is unchanged.
func (v *Verifier) Trust(pubs ...ed25519.PublicKey) error {
	if len(pubs) == 0 {
		return fmt.Errorf("%w: no trusted keys", ErrBadKey)
	}
	keys := make(map[KeyID]ed25519.PublicKey, len(pubs))
	for i, p := range pubs {
		if len(p) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: trusted key #%d is %d bytes, want %d", ErrBadKey, i+1, len(p), ed25519.PublicKeySize)
		}
		keys[IDOf(p)] = append(ed25519.PublicKey(nil), p...)
	}
	v.keys.Store(&keys)
	return nil
}

// KeyIDs returns the ids of the trusted keys, in no particular order.
func (v *Verifier) KeyIDs() []KeyID {
	keys := *v.keys.Load()
	ids := make([]KeyID, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	return ids
}

// VerifyRecord checks that r carries a Seal by a trusted key over its
// namespace, key, version, tombstone flag and the digest of its value. It
// returns nil or an error wrapping one of the sentinel errors.
func (v *Verifier) VerifyRecord(r record.Record) error {
	if r.Seal == nil {
		return fmt.Errorf("%s/%s@%s: %w", r.Namespace, r.Key, r.Version, ErrUnsigned)
	}
	if Digest(r.Value) != r.Seal.Digest {
		return fmt.Errorf("%s/%s@%s: %w", r.Namespace, r.Key, r.Version, ErrDigestMismatch)
	}
	return v.check(r.Namespace, r.Key, r.Version, r.Tombstone, r.Seal)
}

// VerifyChange checks that c carries a Seal by a trusted key over its
// namespace, key, version and tombstone flag (and the digest the Seal
// names, which it cannot check without the value). It returns nil or an
// error wrapping one of the sentinel errors.
func (v *Verifier) VerifyChange(c record.Change) error {
	if c.Seal == nil {
		return fmt.Errorf("%s/%s@%s: %w", c.Namespace, c.Key, c.Version, ErrUnsigned)
	}
	return v.check(c.Namespace, c.Key, c.Version, c.Tombstone, c.Seal)
}

func (v *Verifier) check(ns, key string, ver record.Version, tomb bool, seal *record.Seal) error {
	var pub ed25519.PublicKey
	ok := false
	if v != nil { // a nil or zero Verifier trusts no key: it refuses, never panics
		if keys := v.keys.Load(); keys != nil {
			pub, ok = (*keys)[seal.KeyID]
		}
	}
	if !ok {
		return fmt.Errorf("%s/%s@%s: key %s: %w", ns, key, ver, KeyID(seal.KeyID), ErrUntrustedKey)
	}
	var buf [maxMessageLen]byte
	if !ed25519.Verify(pub, appendMessage(buf[:0], ns, key, ver, tomb, &seal.Digest), seal.Sig[:]) {
		return fmt.Errorf("%s/%s@%s: key %s: %w", ns, key, ver, KeyID(seal.KeyID), ErrBadSignature)
	}
	return nil
}

// GenerateKey returns a new key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

var b64 = base64.StdEncoding

// EncodePrivateKey returns the text form of priv: base64 of its 32-byte
// seed, as written by `dataplane keygen` and read by ParsePrivateKey.
func EncodePrivateKey(priv ed25519.PrivateKey) string { return b64.EncodeToString(priv.Seed()) }

// EncodePublicKey returns the text form of pub: base64 of its 32 bytes.
func EncodePublicKey(pub ed25519.PublicKey) string { return b64.EncodeToString(pub) }

// ParsePrivateKey parses the text form of a private key: base64 of the
// 32-byte seed (or of the 64-byte expanded key), surrounding space ignored.
// Errors never quote the input.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := b64.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: private key is not base64", ErrBadKey)
	}
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		priv := ed25519.PrivateKey(b)
		if !ed25519.NewKeyFromSeed(priv.Seed()).Equal(priv) {
			return nil, fmt.Errorf("%w: inconsistent 64-byte private key", ErrBadKey)
		}
		return priv, nil
	}
	return nil, fmt.Errorf("%w: private key is %d bytes, want %d (seed) or %d", ErrBadKey, len(b), ed25519.SeedSize, ed25519.PrivateKeySize)
}

// LoadSigner builds a Signer from a flag value: "base64:<key>" is the key
// itself, anything else the path of a file holding it (see
// ParsePrivateKey). Errors name the file, never the key.
func LoadSigner(spec string) (*Signer, error) {
	text, ok := strings.CutPrefix(spec, "base64:")
	if !ok {
		b, err := os.ReadFile(spec)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		text = string(b)
	}
	priv, err := ParsePrivateKey(text)
	if err != nil {
		if !ok {
			return nil, fmt.Errorf("signing key file %s: %w", spec, err)
		}
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return NewSigner(priv)
}

// ParsePublicKey parses the text form of a public key: base64 of 32 bytes.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := b64.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%w: public key %q is not base64", ErrBadKey, s)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key %q is %d bytes, want %d", ErrBadKey, s, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// ParseTrusted builds a Verifier from a list of public keys in text form,
// separated by commas, spaces or newlines (as in a -trusted-keys flag or a
// file of keys, one a line; lines starting with '#' are comments). An empty
// (or all white space) list returns nil, nil: signing off. A list that is
// not blank but holds no key (only comments) is ErrNoTrustedKeys, so that
// signing is never turned off by a file whose keys were lost.
func ParseTrusted(list string) (*Verifier, error) {
	var pubs []ed25519.PublicKey
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			p, err := ParsePublicKey(f)
			if err != nil {
				return nil, err
			}
			pubs = append(pubs, p)
		}
	}
	if len(pubs) == 0 {
		if strings.TrimSpace(list) != "" {
			return nil, ErrNoTrustedKeys
		}
		return nil, nil
	}
	return NewVerifier(pubs...)
}
