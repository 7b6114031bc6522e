package wire

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/record"
)

// FuzzParse feeds arbitrary strings to the protocol's small parsers, as
// they arrive in headers, query parameters and paths: they never panic,
// fail only with record.ErrInvalid, and what they accept round-trips.
// EscapeKey of any string unescapes to it and keeps no character a router
// may act on.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`"0000000000010000"`, `W/"ff"`, `"`, `""`, `"-1"`, `"+1"`, `"0x10"`, `"10000000000000000"`, "ffffffffffffffff", "0", " 1", "../x", "a//b", "ünï/日本", "%2e%2e", "\x00", "checkpoint", "ckpt-0000000000010000", "ckpt-000000000001000G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseETag(s); err != nil {
			if !errors.Is(err, record.ErrInvalid) {
				t.Fatalf("ParseETag(%q): %v does not wrap ErrInvalid", s, err)
			}
		} else if back, err := ParseETag(ETag(v)); err != nil || back != v {
			t.Fatalf("ParseETag(%q) = %s, which does not round-trip: %s, %v", s, v, back, err)
		}
		if v, err := ParseVersion(s); err != nil {
			if !errors.Is(err, record.ErrInvalid) {
				t.Fatalf("ParseVersion(%q): %v does not wrap ErrInvalid", s, err)
			}
		} else if back, err := ParseVersion(v.String()); err != nil || back != v {
			t.Fatalf("ParseVersion(%q) = %s, which does not round-trip: %s, %v", s, v, back, err)
		}
		if v, proof, ok := CheckpointPart(s); ok {
			want := "checkpoint"
			if proof {
				want = "ckpt-" + v.String()
			}
			if s != want {
				t.Fatalf("CheckpointPart(%q) accepted it as %q", s, want)
			}
		}
		e := EscapeKey(s)
		if strings.ContainsAny(e, "/.?#~ ") {
			t.Fatalf("EscapeKey(%q) = %q keeps a character a router may act on", s, e)
		}
		if got, err := url.PathUnescape(e); err != nil || got != s {
			t.Fatalf("EscapeKey(%q) = %q unescapes to %q, %v", s, e, got, err)
		}
	})
}
