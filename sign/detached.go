package sign

import (
	"crypto/ed25519"
	"fmt"
	"strings"
)

// Detached signatures: the same keys, key ids and trusted sets as record
// Seals, over other messages (a namespace checkpoint, package checkpoint).
// Each use names its purpose, which is signed before the message, so a
// signature made for one purpose never verifies for another, nor as a
// record Seal.

// SignatureLen is the size of a detached signature.
const SignatureLen = ed25519.SignatureSize

// checkPurpose refuses purposes that could make a signed message ambiguous:
// empty, holding a NUL (the separator), or the record seal's own prefix.
func checkPurpose(purpose string) error {
	if purpose == "" || strings.IndexByte(purpose, 0) >= 0 || "dataplane "+purpose+"\x00" == messagePrefix {
		return fmt.Errorf("sign: purpose %q not allowed", purpose)
	}
	return nil
}

// detachedMessage returns the bytes signed for msg under purpose:
// "dataplane " + purpose + NUL + msg. Record seals sign
// "dataplane record seal v1" + NUL + ..., which checkPurpose keeps apart.
func detachedMessage(purpose string, msg []byte) []byte {
	b := make([]byte, 0, len("dataplane ")+len(purpose)+1+len(msg))
	b = append(b, "dataplane "...)
	b = append(b, purpose...)
	b = append(b, 0)
	return append(b, msg...)
}

// SignDetached signs msg for purpose (a short fixed label such as
// "checkpoint v1", with no NUL) and returns the signing key's id and the
// signature. It panics on a purpose checkPurpose refuses: purposes are
// constants of the calling package, so that is a programming error.
func (s *Signer) SignDetached(purpose string, msg []byte) (KeyID, [SignatureLen]byte) {
	if err := checkPurpose(purpose); err != nil {
		panic(err)
	}
	var sig [SignatureLen]byte
	copy(sig[:], ed25519.Sign(s.priv, detachedMessage(purpose, msg)))
	return s.id, sig
}

// VerifyDetached checks that sig is a signature by the trusted key id over
// msg for purpose. It returns nil or an error wrapping ErrUntrustedKey or
// ErrBadSignature. A nil or zero Verifier trusts no key.
func (v *Verifier) VerifyDetached(purpose string, msg []byte, id KeyID, sig []byte) error {
	if err := checkPurpose(purpose); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	var pub ed25519.PublicKey
	ok := false
	if v != nil {
		if keys := v.keys.Load(); keys != nil {
			pub, ok = (*keys)[id]
		}
	}
	if !ok {
		return fmt.Errorf("%s: key %s: %w", purpose, id, ErrUntrustedKey)
	}
	if len(sig) != SignatureLen || !ed25519.Verify(pub, detachedMessage(purpose, msg), sig) {
		return fmt.Errorf("%s: key %s: %w", purpose, id, ErrBadSignature)
	}
	return nil
}
