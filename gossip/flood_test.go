//go:build !race

// The flood test measures memory, which the race detector's shadow memory
// distorts, and under -race its 100,000 publishes leave the process slow
// enough to starve the cluster tests that run after it. scripts/test.sh
// runs it without -race, on its own.

package gossip

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/record"
)

// TestFloodOfInvalidationsStaysBounded floods one node with changes to
// 100,000 distinct keys (50 times QueueMax; FLOOD_KEYS=200000 for more), pushed to a member that never acknowledges (a plain
// memberlist node: alive, but deaf to our messages), and checks that what
// the node keeps — the gossip repair queue, the pushes awaiting
// acknowledgement with their retry goroutines, the recent-changes table —
// stays bounded: heap and stacks grow by less than a fixed bound after GC,
// the goroutine count stays within QueueMax of where it started, and the
// work shed is counted.
func TestFloodOfInvalidationsStaysBounded(t *testing.T) {
	keys := 100_000
	if s := os.Getenv("FLOOD_KEYS"); s != "" {
		keys, _ = strconv.Atoi(s)
	}
	cfg := testConfig(t, "flooded")
	cfg.tune.PushAckTimeout = time.Second // pushes stay pending for 31 s: the whole flood
	cfg.tune.PushRetries = 5
	cfg.tune.QueueMax = 2048
	cfg.tune.RecentMax = 4096
	ml := *cfg.Memberlist
	ml.EnableCompression = false // memberlist's per-message LZW would dominate the run time
	cfg.Memberlist = &ml
	n, err := New(cfg, Funcs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort = "mute", "127.0.0.1", 0
	mc.LogOutput = io.Discard
	mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = 1, 1, 1 // speaks our version, ignores our messages
	mute, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mute.Shutdown() })
	if _, err := mute.Join([]string{n.Addr()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return len(n.Members()) == 2 }, "the mute member to join")

	// What the process holds: the least of three samples taken right after
	// a collection (the node's goroutines keep allocating meanwhile, which
	// only ever adds to a sample).
	usage := func() (uint64, int) {
		least := uint64(math.MaxUint64)
		for range 3 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			least = min(least, ms.HeapAlloc+ms.StackInuse)
		}
		return least, runtime.NumGoroutine()
	}
	mem0, g0 := usage()
	start := time.Now()
	value := []byte("a small inline value")
	for i := range keys {
		rec := record.Record{Namespace: "keys", Key: fmt.Sprintf("flood/%07d", i), Value: value, Version: record.Version(1000 + i)}
		if err := n.Publish(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	mem1, g1 := usage()
	shedPush := testutil.ToFloat64(n.m.dropped.WithLabelValues("push_retry_shed"))
	shedQueue := testutil.ToFloat64(n.m.dropped.WithLabelValues("gossip_queue_full"))
	grown := int64(mem1) - int64(mem0)
	t.Logf("%d changes in %s: heap+stacks %+.1f MiB, goroutines %d -> %d, queued %d, shed: %v pushes without retries, %v queued messages",
		keys, elapsed.Round(time.Millisecond), float64(grown)/(1<<20), g0, g1, n.queue.NumQueued(), shedPush, shedQueue)

	const bound = 64 << 20
	if grown > bound {
		t.Errorf("heap and stacks grew by %.1f MiB under the flood, bound %d MiB", float64(grown)/(1<<20), bound>>20)
	}
	if g1-g0 > cfg.tune.QueueMax+64 {
		t.Errorf("goroutines grew from %d to %d, more than QueueMax (%d) retry loops", g0, g1, cfg.tune.QueueMax)
	}
	if q := n.queue.NumQueued(); q > cfg.tune.QueueMax {
		t.Errorf("gossip queue holds %d messages, QueueMax %d", q, cfg.tune.QueueMax)
	}
	if shedPush == 0 || shedQueue == 0 {
		t.Errorf("shed work not counted: push_retry_shed %v, gossip_queue_full %v", shedPush, shedQueue)
	}
}
