// Package xofbench compares the extendable-output functions the state
// hash could use (package statehash, "Why hand-written"), on the work one
// element costs: a 170-byte input, 2048 bytes of output. It is a module of
// its own, so the candidates that were not chosen stay out of the main
// go.mod:
//
//	cd statehash/xofbench && go test -bench . -count 5
package xofbench

import (
	"bytes"
	"crypto/sha3"
	"testing"

	zeebo "github.com/zeebo/blake3"
	luke "lukechampine.com/blake3"
)

var in = bytes.Repeat([]byte{0xa5}, 170)

// BenchmarkSHAKE128 is the standard library's SHAKE128 (the state hash's
// algorithm 1).
func BenchmarkSHAKE128(b *testing.B) {
	var out [2048]byte
	x := sha3.NewSHAKE128()
	for b.Loop() {
		x.Reset()
		_, _ = x.Write(in)
		_, _ = x.Read(out[:])
	}
}

// BenchmarkZeeboBLAKE3 is github.com/zeebo/blake3's XOF (one output block
// at a time).
func BenchmarkZeeboBLAKE3(b *testing.B) {
	var out [2048]byte
	h := zeebo.New()
	for b.Loop() {
		h.Reset()
		_, _ = h.Write(in)
		_, _ = h.Digest().Read(out[:])
	}
}

// BenchmarkLukechampineBLAKE3 is lukechampine.com/blake3's XOF read 1024
// bytes at a time, as statehash reads it (16 output blocks per call, no
// goroutines).
func BenchmarkLukechampineBLAKE3(b *testing.B) {
	var out [2048]byte
	h := luke.New(32, nil)
	for b.Loop() {
		h.Reset()
		_, _ = h.Write(in)
		x := h.XOF()
		_, _ = x.Read(out[:1024])
		_, _ = x.Read(out[1024:])
	}
}

// TestSameOutput: both BLAKE3 libraries compute the same XOF.
func TestSameOutput(t *testing.T) {
	var a, z [2048]byte
	h := luke.New(32, nil)
	_, _ = h.Write(in)
	_, _ = h.XOF().Read(a[:])
	zh := zeebo.New()
	_, _ = zh.Write(in)
	_, _ = zh.Digest().Read(z[:])
	if a != z {
		t.Fatal("the two BLAKE3 XOFs differ")
	}
}
