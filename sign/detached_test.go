package sign_test

import (
	"errors"
	"testing"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

func TestDetached(t *testing.T) {
	pub, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, _ := sign.NewSigner(priv)
	v, _ := sign.NewVerifier(pub)
	msg := []byte("namespace state")
	id, sig := s.SignDetached("checkpoint v1", msg)
	if id != s.KeyID() {
		t.Fatalf("key id %s, want %s", id, s.KeyID())
	}
	if err := v.VerifyDetached("checkpoint v1", msg, id, sig[:]); err != nil {
		t.Fatalf("own signature refused: %v", err)
	}
	if err := v.VerifyDetached("other v1", msg, id, sig[:]); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("signature for another purpose: err = %v, want ErrBadSignature", err)
	}
	if err := v.VerifyDetached("checkpoint v1", []byte("namespace statf"), id, sig[:]); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("changed message: err = %v, want ErrBadSignature", err)
	}
	if err := v.VerifyDetached("checkpoint v1", msg, id, sig[:10]); !errors.Is(err, sign.ErrBadSignature) {
		t.Fatalf("short signature: err = %v, want ErrBadSignature", err)
	}
	pub2, _, _ := sign.GenerateKey()
	v2, _ := sign.NewVerifier(pub2)
	if err := v2.VerifyDetached("checkpoint v1", msg, id, sig[:]); !errors.Is(err, sign.ErrUntrustedKey) {
		t.Fatalf("untrusted key: err = %v, want ErrUntrustedKey", err)
	}
	var nilV *sign.Verifier
	if err := nilV.VerifyDetached("checkpoint v1", msg, id, sig[:]); !errors.Is(err, sign.ErrUntrustedKey) {
		t.Fatalf("nil verifier: err = %v, want ErrUntrustedKey", err)
	}
}

// TestDetachedIsNoSeal: a detached signature can never pass as a record
// Seal, whatever purpose and message the signer was given.
func TestDetachedIsNoSeal(t *testing.T) {
	pub, priv, _ := sign.GenerateKey()
	s, _ := sign.NewSigner(priv)
	v, _ := sign.NewVerifier(pub)
	digest := sign.Digest(nil)
	seal := sign.Message("keys", "k", 5, true, &digest)
	defer func() {
		if recover() == nil {
			t.Fatal("signing under the record seal's purpose did not panic")
		}
	}()
	// Try to make the detached message equal a seal message.
	_, sig := s.SignDetached("record seal v1", seal[len("dataplane record seal v1\x00"):])
	c := record.Change{Namespace: "keys", Key: "k", Version: 5, Tombstone: true, Seal: &record.Seal{KeyID: s.KeyID(), Digest: digest, Sig: sig}}
	if v.VerifyChange(c) == nil {
		t.Fatal("a detached signature verified as a record seal")
	}
}
