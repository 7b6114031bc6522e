package checkpoint_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

func TestMarshalRoundTrip(t *testing.T) {
	s, _ := keys(t)
	h, n := stateOf(nsRecords(s, 10, ver(0)), 0)
	c := signed(t, s, "keys", ver(100), h, n, t0.Add(time.Second))
	c.Prev, c.TombstoneFloor = ver(50), ver(1)
	if err := c.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := checkpoint.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Marshal()
	if !bytes.Equal(b, b2) || back.Namespace != "keys" || back.Version != ver(100) || back.Prev != ver(50) ||
		back.Count != n || !back.IssuedAt.Equal(c.IssuedAt) || !back.Hash.Equal(&h) || !back.Signed || back.KeyID != s.KeyID() {
		t.Fatalf("round trip changed the checkpoint: %+v", back)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": b[:len(b)-1],
		"trailing":  append(append([]byte(nil), b...), 0),
		"magic":     append([]byte("XK"), b[2:]...),
		"format":    append([]byte{'D', 'K', 9}, b[3:]...),
		"flags":     append([]byte{'D', 'K', b[2], 4}, b[4:]...),
		"unsigned":  append([]byte{'D', 'K', b[2], 0}, b[4:]...), // signature bytes now trail
		// The layout of format 1 (no algorithm byte: a SHAKE128 hash).
		"format 1":         append([]byte{'D', 'K', 1, b[3]}, b[5:]...),
		"hash algorithm":   append([]byte{'D', 'K', b[2], b[3], statehash.Algorithm - 1}, b[5:]...),
		"hash algorithm 3": append([]byte{'D', 'K', b[2], b[3], statehash.Algorithm + 1}, b[5:]...),
	} {
		if _, err := checkpoint.Unmarshal(bad); !errors.Is(err, checkpoint.ErrCorrupt) || !errors.Is(err, record.ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	bad := *c
	bad.Prev = bad.Version + 1
	if _, err := bad.Marshal(); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("prev above version: err = %v", err)
	}
	bad = *c
	bad.ExpiresAt = bad.IssuedAt
	if _, err := bad.Marshal(); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("expiry not after issue: err = %v", err)
	}
}

// TestVerifyRefusals: each way a checkpoint can be wrong is refused with
// its own reason and counted under it; a good one passes.
func TestVerifyRefusals(t *testing.T) {
	s, keysV := keys(t)
	other, _ := keys(t)
	now := t0.Add(time.Hour)
	v := &checkpoint.Verifier{Keys: keysV, MaxSkew: time.Second, Now: func() time.Time { return now }}
	h, n := stateOf(nsRecords(s, 3, ver(0)), 0)
	good := signed(t, s, "keys", ver(3_600_000-2000), h, n, now.Add(-time.Second))
	last := signed(t, s, "keys", ver(3_600_000-3000), h, n, now.Add(-2*time.Second))
	if err := v.Verify(good, last); err != nil {
		t.Fatalf("good checkpoint refused: %v", err)
	}
	if err := v.Verify(good, nil); err != nil {
		t.Fatalf("good checkpoint refused without a last one: %v", err)
	}
	if err := v.Verify(good, good); err != nil {
		t.Fatalf("the same checkpoint again refused: %v", err)
	}

	unsigned := *good
	unsigned.Signed = false
	untrusted := signed(t, other, "keys", good.Version, h, n, good.IssuedAt)
	tampered := *good
	tampered.Count++
	tamperedHash := *good
	tamperedHash.Hash.Add(statehashElement("extra"))
	tamperedNS := *good
	tamperedNS.Namespace = "routes"
	expired := signed(t, s, "keys", good.Version, h, n, now.Add(-2*time.Minute))
	future := signed(t, s, "keys", good.Version, h, n, now.Add(3*time.Second))
	futureV := signed(t, s, "keys", record.MakeVersion(now.Add(3*time.Second), 0), h, n, now)
	olderV := signed(t, s, "keys", last.Version-1, h, n, now)
	olderIssue := signed(t, s, "keys", good.Version, h, n, good.IssuedAt.Add(-time.Millisecond))

	for _, tc := range []struct {
		name   string
		c      *checkpoint.Checkpoint
		last   *checkpoint.Checkpoint
		reason string
		is     error
	}{
		{"unsigned", &unsigned, nil, "unsigned", sign.ErrUnsigned},
		{"untrusted key", untrusted, nil, "untrusted_key", sign.ErrUntrustedKey},
		{"count changed", &tampered, nil, "bad_signature", sign.ErrBadSignature},
		{"hash changed", &tamperedHash, nil, "bad_signature", sign.ErrBadSignature},
		{"namespace changed", &tamperedNS, nil, "bad_signature", sign.ErrBadSignature},
		{"expired", expired, nil, "expired", checkpoint.ErrExpired},
		{"issued in the future", future, nil, "future", checkpoint.ErrFuture},
		{"version in the future", futureV, nil, "future", checkpoint.ErrFuture},
		{"older version", olderV, last, "rollback", checkpoint.ErrRollback},
		{"same version issued earlier", olderIssue, good, "rollback", checkpoint.ErrRollback},
		{"last of another namespace", good, signed(t, s, "routes", 1, h, n, good.IssuedAt), "invalid", record.ErrInvalid},
	} {
		before := v.Refused(tc.reason)
		err := v.Verify(tc.c, tc.last)
		if !errors.Is(err, tc.is) || checkpoint.Reason(err) != tc.reason {
			t.Errorf("%s: err = %v (reason %q), want %v (%q)", tc.name, err, checkpoint.Reason(err), tc.is, tc.reason)
		}
		if got := v.Refused(tc.reason) - before; got != 1 {
			t.Errorf("%s: counted %d refusals under %q, want 1", tc.name, got, tc.reason)
		}
	}
	// Within the skew, an expiry just passed and an issue just ahead pass.
	justExpired := signed(t, s, "keys", good.Version, h, n, now.Add(-time.Minute+500*time.Millisecond-time.Second))
	if err := v.Verify(justExpired, nil); err != nil {
		t.Errorf("expired within the skew refused: %v", err)
	}
	justAhead := signed(t, s, "keys", good.Version, h, n, now.Add(500*time.Millisecond))
	if err := v.Verify(justAhead, nil); err != nil {
		t.Errorf("issued ahead within the skew refused: %v", err)
	}
}

// TestMatch: the state hash and the count must both agree.
func TestMatch(t *testing.T) {
	s, _ := keys(t)
	recs := nsRecords(s, 5, ver(0))
	h, n := stateOf(recs, 0)
	c := signed(t, s, "keys", ver(10), h, n, t0)
	if err := checkpoint.Match(c, &h, n); err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.Match(c, &h, n+1); !errors.Is(err, checkpoint.ErrMismatch) {
		t.Fatalf("count off by one: err = %v", err)
	}
	h2, n2 := stateOf(recs[1:], 0)
	if err := checkpoint.Match(c, &h2, n2); !errors.Is(err, checkpoint.ErrMismatch) || checkpoint.Reason(err) != "mismatch" {
		t.Fatalf("a key left out: err = %v", err)
	}
}
