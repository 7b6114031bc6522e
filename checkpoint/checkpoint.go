package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// Sentinel errors of verification, besides sign's ErrUnsigned,
// ErrUntrustedKey and ErrBadSignature; Reason names each for metrics.
var (
	// ErrExpired means the checkpoint's ExpiresAt has passed.
	ErrExpired = errors.New("checkpoint expired")
	// ErrRollback means the checkpoint is older than the last one verified.
	ErrRollback = errors.New("checkpoint older than the last verified")
	// ErrFuture means the checkpoint was issued (or its version taken)
	// further in the future than the allowed clock skew.
	ErrFuture = errors.New("checkpoint from the future")
	// ErrMismatch means a state (a snapshot, a node's namespace) does not
	// hash to the checkpoint's hash, or not to its count.
	ErrMismatch = errors.New("state does not match the checkpoint")
	// ErrCorrupt means bytes could not be decoded as a checkpoint or a
	// snapshot proof; it wraps record.ErrCorrupt.
	ErrCorrupt = fmt.Errorf("checkpoint: %w", record.ErrCorrupt)
)

// Reason returns the metric label of a verification error: "unsigned",
// "untrusted_key", "bad_signature", "digest_mismatch" (a snapshot record
// above the checkpoint's version whose value does not match its seal),
// "expired", "rollback", "future",
// "mismatch", "corrupt" or "invalid".
func Reason(err error) string {
	switch {
	case errors.Is(err, sign.ErrUnsigned):
		return "unsigned"
	case errors.Is(err, sign.ErrUntrustedKey):
		return "untrusted_key"
	case errors.Is(err, sign.ErrBadSignature):
		return "bad_signature"
	case errors.Is(err, sign.ErrDigestMismatch):
		return "digest_mismatch"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrRollback):
		return "rollback"
	case errors.Is(err, ErrFuture):
		return "future"
	case errors.Is(err, ErrMismatch):
		return "mismatch"
	case errors.Is(err, record.ErrCorrupt):
		return "corrupt"
	}
	return "invalid"
}

// Reasons lists every label Reason returns, for metrics that pre-create
// their series.
var Reasons = [...]string{"unsigned", "untrusted_key", "bad_signature", "digest_mismatch", "expired", "rollback", "future", "mismatch", "corrupt", "invalid"}

// Checkpoint is the publisher's signed statement about one namespace:
// the multiset of the states (key, version, tombstone, value digest) of
// every key whose newest version at or below Version is not a tombstone
// older than TombstoneFloor hashes to Hash, and there are Count of them.
type Checkpoint struct {
	// Namespace the checkpoint covers.
	Namespace string
	// Version is V: the state covered is every key's newest change at or
	// below it.
	Version record.Version
	// Prev is the Version of the checkpoint the issuer issued before this
	// one for the namespace (0: none); never above Version.
	Prev record.Version
	// TombstoneFloor: tombstones with versions below it are left out (the
	// snapshots forget them after the tombstone horizon); 0 keeps all.
	TombstoneFloor record.Version
	// Count is the number of elements Hash covers.
	Count uint64
	// Hash is the state hash of the covered elements.
	Hash statehash.Hash
	// IssuedAt is when the issuer signed it: a node whose state at
	// Version matches is current as of this time. Millisecond resolution.
	IssuedAt time.Time
	// ExpiresAt is when it stops proving anything (freeze attacks).
	// Millisecond resolution.
	ExpiresAt time.Time

	// KeyID and Sig are the issuer's signature (sign.Signer.SignDetached)
	// over the encoding of every field above; Signed says they are set.
	Signed bool
	KeyID  sign.KeyID
	Sig    [sign.SignatureLen]byte
}

// purpose labels checkpoint signatures (see sign.Signer.SignDetached).
const purpose = "namespace checkpoint v1"

// Encoding constants.
const (
	magic0, magic1 = 'D', 'K'
	// format 2 names the state hash's construction in the encoding
	// (statehash.Algorithm); format 1 (no such byte, SHAKE128) is retired.
	format     = 2
	flagSigned = 1
	// fixedBody is the size of the body without the namespace and its
	// length: header 4 | hash algorithm 1 | version, prev, floor, count,
	// issued, expires (6 × 8) | lanes.
	fixedBody = 4 + 1 + 6*8 + statehash.RawSize
	// MaxEncodedSize bounds an encoded checkpoint.
	MaxEncodedSize = fixedBody + 1 + record.MaxNamespaceLen + record.SealKeyIDLen + sign.SignatureLen
)

// body appends the signed part of c's encoding: every field but the
// signature, with the signed flag as given.
func (c *Checkpoint) body(b []byte, signed bool) []byte {
	var flags byte
	if signed {
		flags |= flagSigned
	}
	b = append(b, magic0, magic1, format, flags, statehash.Algorithm)
	b = binary.AppendUvarint(b, uint64(len(c.Namespace)))
	b = append(b, c.Namespace...)
	for _, v := range []uint64{uint64(c.Version), uint64(c.Prev), uint64(c.TombstoneFloor), c.Count, uint64(c.IssuedAt.UnixMilli()), uint64(c.ExpiresAt.UnixMilli())} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return c.Hash.AppendRaw(b)
}

// Marshal returns the encoding of c:
//
//	"DK" | format 0x02 | flags (bit 0: signed) |
//	state hash algorithm (1 byte, statehash.Algorithm) |
//	uvarint len + namespace | version | prev | tombstone floor | count |
//	issued-at (Unix ms) | expires-at (Unix ms)  (8 bytes each, big endian) |
//	state hash lanes (statehash.RawSize bytes) |
//	[signed: key id (8 bytes) | ed25519 signature (64 bytes)]
//
// The signature covers every byte before it, so the hash algorithm too:
// a checkpoint is never read as a hash of another construction.
func (c *Checkpoint) Marshal() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b := c.body(make([]byte, 0, MaxEncodedSize), c.Signed)
	if c.Signed {
		b = append(b, c.KeyID[:]...)
		b = append(b, c.Sig[:]...)
	}
	return b, nil
}

// validate checks what Marshal and Unmarshal refuse.
func (c *Checkpoint) validate() error {
	if err := record.ValidateNamespace(c.Namespace); err != nil {
		return err
	}
	if c.Prev > c.Version {
		return fmt.Errorf("%w: checkpoint of %s: previous version %s above version %s", record.ErrInvalid, c.Namespace, c.Prev, c.Version)
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return fmt.Errorf("%w: checkpoint of %s expires (%s) before it is issued (%s)", record.ErrInvalid, c.Namespace, c.ExpiresAt, c.IssuedAt)
	}
	return nil
}

// Unmarshal decodes Marshal's encoding. Anything else (a bad header, an
// earlier format, another state hash algorithm, a length other than the encoding's, an invalid namespace, a previous
// version above the version, an expiry not after the issue) is an error
// wrapping ErrCorrupt. It checks no signature: see Verifier.
func Unmarshal(b []byte) (*Checkpoint, error) {
	if len(b) < 6 || len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != magic0 || b[1] != magic1 || b[2] != format || b[3]&^flagSigned != 0 {
		return nil, fmt.Errorf("%w: bad header % x (format %d, want %d)", ErrCorrupt, b[:4], b[2], format)
	}
	if b[4] != statehash.Algorithm {
		return nil, fmt.Errorf("%w: state hash algorithm %d, want %d", ErrCorrupt, b[4], statehash.Algorithm)
	}
	c := &Checkpoint{Signed: b[3]&flagSigned != 0}
	n, k := binary.Uvarint(b[5:])
	if k <= 0 || n > record.MaxNamespaceLen {
		return nil, fmt.Errorf("%w: bad namespace length", ErrCorrupt)
	}
	rest := b[5+k:]
	want := int(n) + 6*8 + statehash.RawSize
	if c.Signed {
		want += len(c.KeyID) + len(c.Sig)
	}
	if len(rest) != want {
		return nil, fmt.Errorf("%w: %d bytes after the header, want %d", ErrCorrupt, len(rest), want)
	}
	c.Namespace = string(rest[:n])
	rest = rest[n:]
	u := func() uint64 { v := binary.BigEndian.Uint64(rest); rest = rest[8:]; return v }
	c.Version, c.Prev, c.TombstoneFloor = record.Version(u()), record.Version(u()), record.Version(u())
	c.Count = u()
	issued, expires := u(), u()
	if issued > 1<<62 || expires > 1<<62 {
		return nil, fmt.Errorf("%w: time out of range", ErrCorrupt)
	}
	c.IssuedAt, c.ExpiresAt = time.UnixMilli(int64(issued)), time.UnixMilli(int64(expires))
	if err := c.Hash.ParseRaw(rest[:statehash.RawSize]); err != nil {
		return nil, err
	}
	rest = rest[statehash.RawSize:]
	if c.Signed {
		copy(c.KeyID[:], rest)
		copy(c.Sig[:], rest[len(c.KeyID):])
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return c, nil
}

// Sign sets c's signature by s. Times are cut to milliseconds first, as
// the encoding keeps them.
func (c *Checkpoint) Sign(s *sign.Signer) error {
	c.IssuedAt, c.ExpiresAt = c.IssuedAt.Truncate(time.Millisecond), c.ExpiresAt.Truncate(time.Millisecond)
	if err := c.validate(); err != nil {
		return err
	}
	c.KeyID, c.Sig = s.SignDetached(purpose, c.body(make([]byte, 0, MaxEncodedSize), true))
	c.Signed = true
	return nil
}

// String names c for logs.
func (c *Checkpoint) String() string {
	return fmt.Sprintf("checkpoint %s@%s (%d elements, issued %s)", c.Namespace, c.Version, c.Count, c.IssuedAt.UTC().Format(time.RFC3339Nano))
}

// Verifier checks checkpoints: signature by a trusted key (the same
// sign.Verifier, key ids and rotation as records), not from the future,
// not expired, not older than the last one verified. It counts every
// refusal by Reason. Safe for concurrent use once configured.
type Verifier struct {
	// Keys are the trusted publisher keys. Nil trusts none: every signed
	// checkpoint is refused as untrusted.
	Keys *sign.Verifier
	// MaxSkew is the clock skew allowed between issuer and verifier: a
	// checkpoint issued more than this in the future is refused, and one
	// is still accepted until this long after its ExpiresAt.
	MaxSkew time.Duration
	// Now is the verifier's clock; nil means time.Now.
	Now func() time.Time

	refused [len(Reasons)]atomic.Uint64 // by index in Reasons
}

var reasonIndex = func() map[string]int {
	m := make(map[string]int, len(Reasons))
	for i, r := range Reasons {
		m[r] = i
	}
	return m
}()

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// refuse counts err under its Reason and returns it.
func (v *Verifier) refuse(err error) error {
	v.refused[reasonIndex[Reason(err)]].Add(1)
	return err
}

// Refused returns how many verifications failed for reason (a Reason
// label).
func (v *Verifier) Refused(reason string) uint64 {
	i, ok := reasonIndex[reason]
	if !ok {
		return 0
	}
	return v.refused[i].Load()
}

// verifySigned checks what every use of a checkpoint needs: a valid
// encoding, a signature by a trusted key, and neither its issue time nor
// its version ahead of now (returned) by more than MaxSkew. Refusals are
// counted by Reason.
func (v *Verifier) verifySigned(c *Checkpoint) (time.Time, error) {
	if err := c.validate(); err != nil {
		return time.Time{}, v.refuse(err)
	}
	if !c.Signed {
		return time.Time{}, v.refuse(fmt.Errorf("%s: %w", c, sign.ErrUnsigned))
	}
	if err := v.Keys.VerifyDetached(purpose, c.body(make([]byte, 0, MaxEncodedSize), true), c.KeyID, c.Sig[:]); err != nil {
		return time.Time{}, v.refuse(fmt.Errorf("%s: %w", c, err))
	}
	now := v.now()
	if c.IssuedAt.After(now.Add(v.MaxSkew)) || c.Version.Time().After(now.Add(v.MaxSkew)) {
		return time.Time{}, v.refuse(fmt.Errorf("%s: %w: now is %s", c, ErrFuture, now.UTC().Format(time.RFC3339Nano)))
	}
	return now, nil
}

// Verify checks c. last is the last checkpoint of c.Namespace this node
// verified (nil: none yet, for example on a node's first start): c must
// not be older, that is have a lower Version, or the same Version issued
// earlier. It returns nil or an error wrapping sign.ErrUnsigned,
// sign.ErrUntrustedKey, sign.ErrBadSignature, ErrFuture, ErrExpired,
// ErrRollback or record.ErrInvalid, counted by Reason.
func (v *Verifier) Verify(c *Checkpoint, last *Checkpoint) error {
	now, err := v.verifySigned(c)
	if err != nil {
		return err
	}
	if !now.Before(c.ExpiresAt.Add(v.MaxSkew)) {
		return v.refuse(fmt.Errorf("%s: %w at %s", c, ErrExpired, c.ExpiresAt.UTC().Format(time.RFC3339Nano)))
	}
	if last != nil {
		if last.Namespace != c.Namespace {
			return v.refuse(fmt.Errorf("%s: %w: compared with the last checkpoint of %s", c, record.ErrInvalid, last.Namespace))
		}
		if c.Version < last.Version || c.Version == last.Version && c.IssuedAt.Before(last.IssuedAt) {
			return v.refuse(fmt.Errorf("%s: %w (%s)", c, ErrRollback, last))
		}
	}
	return nil
}

// Match reports, as nil or an error wrapping ErrMismatch, whether a state
// with hash h and count n is the state c covers. It checks no signature:
// verify c first.
func Match(c *Checkpoint, h *statehash.Hash, n uint64) error {
	if !c.Hash.Equal(h) {
		return fmt.Errorf("%s: %w: hash differs (%d elements held)", c, ErrMismatch, n)
	}
	if c.Count != n {
		return fmt.Errorf("%s: %w: %d elements held, %d signed", c, ErrMismatch, n, c.Count)
	}
	return nil
}

// errUnsignedSnapshot marks a snapshot that comes without a checkpoint.
var errUnsignedSnapshot = fmt.Errorf("snapshot without a checkpoint: %w", sign.ErrUnsigned)
