package publisher

import (
	"fmt"
	"testing"

	"github.com/dataplane/dataplane/record"
)

// TestAcksBounded: the acknowledged changes kept for the log check are
// bounded by count and by bytes of values, forgetting the oldest.
func TestAcksBounded(t *testing.T) {
	var a acks
	for i := range maxAcked + 100 {
		a.add(record.Record{Namespace: "keys", Key: fmt.Sprint(i), Version: record.Version(i + 1)})
	}
	if len(a.recs) != maxAcked || a.recs[0].Version != 101 {
		t.Fatalf("%d kept, oldest %d; want %d, oldest 101", len(a.recs), a.recs[0].Version, maxAcked)
	}
	big := make([]byte, 1<<20)
	for i := range 40 {
		a.add(record.Record{Namespace: "keys", Key: "big", Value: big, Version: record.Version(1<<20 + i)})
	}
	if a.bytes > maxAckedBytes || a.bytes != 16<<20 {
		t.Fatalf("%d bytes of values kept, want %d", a.bytes, maxAckedBytes)
	}
	a.forget(nil, record.Version(1<<21), record.Version(1<<20+30), func(record.Record) bool { return false })
	if len(a.recs) != 10 || a.bytes != 10<<20 {
		t.Fatalf("after forgetting the expired: %d kept, %d bytes; want 10, 10 MiB", len(a.recs), a.bytes)
	}
}
