package sentinel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// countingStore is a real directory origin that counts record reads, the
// most in flight at once, and makes each take a millisecond so that
// concurrent reads overlap.
type countingStore struct {
	origin.Store
	reads, inflight, maxInflight atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	s.reads.Add(1)
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		m := s.maxInflight.Load()
		if n <= m || s.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(time.Millisecond)
	return s.Store.Get(ctx, ns, key, ifNewer)
}

// limitsEnv is a node over a counting directory origin holding two known
// routes, and a sentinel over it.
func limitsEnv(t *testing.T, gw sentinel.Proxy, now func() time.Time) (*countingStore, *dataplane.Node, *sentinel.Server) {
	t.Helper()
	ctx := context.Background()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.New(d, publisher.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	t.Cleanup(up.Close)
	for _, h := range []string{"known-1.example.com", "known-2.example.com"} {
		b, _ := json.Marshal(sentinel.Route{Upstreams: []string{up.URL}})
		if _, err := pub.Put(ctx, sentinel.RoutesNamespace, h, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pub.Snapshot(ctx, sentinel.RoutesNamespace); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: d}
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: time.Hour, Stale: time.Hour} // no revalidation reads during the test
	copts.MaxBytes = 1 << 20
	n, err := dataplane.Open(ctx, dataplane.Config{Origin: cs, Cache: copts, Namespaces: []string{sentinel.RoutesNamespace}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sentinel.Start(sentinel.ServerConfig{Node: n, Listener: loopback(t), Logger: slog.New(slog.DiscardHandler), Gateway: gw, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()); n.Close() })
	return cs, n, srv
}

func serve(g http.Handler, host, client string) int {
	req := httptest.NewRequest("GET", "http://"+host+"/", nil)
	req.RemoteAddr = client
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	return rec.Code
}

// TestRandomHostsBounded sends 10,000 requests, 9,800 for random hosts and
// 200 for known ones, from 64 goroutines: the origin never sees more
// reads in flight than MaxConcurrentMisses, each client past its budget is
// answered 429, and the known routes stay cached (served with no origin
// read afterwards).
func TestRandomHostsBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients int // distinct client addresses
		rate    float64
	}{
		// Many clients: only the concurrency bound holds the origin back.
		{"many clients", 10_000, 1000},
		// One client: its token bucket (5 s of 10/s: 50, a frozen clock)
		// lets 50 misses through and answers the rest 429.
		{"one client", 1, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 4
			frozen := time.Now()
			cs, n, srv := limitsEnv(t, sentinel.Proxy{MaxConcurrentMisses: limit, MissRate: tc.rate}, func() time.Time { return frozen })
			g := srv.Gateway()
			sentinel.SetMissWait(g, 5*time.Millisecond)
			readsBefore := cs.reads.Load()
			var codes sync.Map
			var wg sync.WaitGroup
			var next atomic.Int64
			for w := 0; w < 64; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > 10_000 {
							return
						}
						c := int(i) % tc.clients
						client := fmt.Sprintf("10.%d.%d.%d:5000", c/65536, c/256%256, c%256)
						host := fmt.Sprintf("h%x.example.com", rand.Uint64())
						if i%50 == 0 {
							host = fmt.Sprintf("known-%d.example.com", 1+i%100/50)
						}
						code := serve(g, host, client)
						if i%50 == 0 && code != 200 {
							t.Errorf("known host %s: %d", host, code)
						}
						cnt, _ := codes.LoadOrStore(code, new(atomic.Int64))
						cnt.(*atomic.Int64).Add(1)
					}
				}()
			}
			wg.Wait()
			got := map[int]int64{}
			codes.Range(func(k, v any) bool { got[k.(int)] = v.(*atomic.Int64).Load(); return true })
			reads := cs.reads.Load() - readsBefore
			t.Logf("statuses %v, origin reads %d, most in flight %d", got, reads, cs.maxInflight.Load())
			if m := cs.maxInflight.Load(); m > limit {
				t.Fatalf("%d origin reads in flight at once, limit %d", m, limit)
			}
			if tc.clients == 1 && (reads > 50 || got[http.StatusTooManyRequests] != 9800-50) {
				t.Fatalf("one client: %d origin reads and %d answers 429; want at most its burst of 50 reads (5 s of MissRate 10) and the rest 429", reads, got[429])
			}
			if got[404]+got[429]+got[503] != 9800 || got[200] != 200 {
				t.Fatalf("statuses %v: want 200 known (200) and 9800 unknown (404/429/503)", got)
			}
			for _, h := range []string{"known-1.example.com", "known-2.example.com"} {
				if _, ok := n.Peek(sentinel.RoutesNamespace, h); !ok {
					t.Fatalf("%s was evicted by the random hosts", h)
				}
				before := cs.reads.Load()
				if code := serve(g, h, "192.0.2.1:1"); code != 200 || cs.reads.Load() != before {
					t.Fatalf("%s after the flood: %d with %d origin reads, want 200 from memory", h, code, cs.reads.Load()-before)
				}
			}
		})
	}
}
