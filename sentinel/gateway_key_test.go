package sentinel

import (
	"strings"
	"testing"
)

// TestKeyRecordKeyFast: the gateway's one-allocation keyRecordKey names the
// same record as KeyRecordKey, for short and long keys and keyspaces (past
// its buffer it falls back to KeyRecordKey).
func TestKeyRecordKeyFast(t *testing.T) {
	for _, tc := range []struct{ keyspace, raw string }{
		{"ks", "bench-key"},
		{"", "k"},
		{"team-a", strings.Repeat("x", 600)},
		{"team-a", strings.Repeat("x", 512)},
		{strings.Repeat("k", 63), "key"},
		{strings.Repeat("k", 64), "key"},
		{strings.Repeat("k", 200), "key"},
	} {
		if got, want := keyRecordKey(tc.keyspace, tc.raw), KeyRecordKey(tc.keyspace, tc.raw); got != want {
			t.Errorf("keyRecordKey(%q, %q) = %q, want %q", tc.keyspace, tc.raw, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = keyRecordKey("ks", "bench-key-of-some-length-over-32-bytes") }); n > 1 {
		t.Errorf("keyRecordKey makes %v allocations, want 1", n)
	}
}
