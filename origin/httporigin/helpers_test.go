package httporigin_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/record"
)

const token = "node-write-token"

// counting wraps a store, counts its record reads and can slow them down.
type counting struct {
	origin.Store
	gets  atomic.Int64
	delay time.Duration
}

func (c *counting) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	c.gets.Add(1)
	if c.delay > 0 {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return record.Record{}, ctx.Err()
		}
	}
	return c.Store.Get(ctx, ns, key, ifNewer)
}

// testNode is one real cache node on a loopback listener. Restart replaces
// the node behind the listener with a cold one, as a redeploy would; Stop
// closes the listener.
type testNode struct {
	t      *testing.T
	origin *counting // this node's reads of the shared origin
	cur    atomic.Pointer[cachenode.Server]
	ts     *httptest.Server
	once   sync.Once
}

func startNode(t *testing.T, d origin.Store, originDelay time.Duration) *testNode {
	t.Helper()
	n := &testNode{t: t, origin: &counting{Store: d, delay: originDelay}}
	n.cur.Store(n.newServer())
	n.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.cur.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { n.Stop(); n.cur.Load().Close() })
	return n
}

func (n *testNode) newServer() *cachenode.Server {
	cfg := cachenode.DefaultConfig()
	cfg.Origin = n.origin
	cfg.WriteToken = token
	s, err := cachenode.New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	return s
}

func (n *testNode) URL() string { return n.ts.URL }

func (n *testNode) Restart() { n.cur.Swap(n.newServer()).Close() }

func (n *testNode) Stop() { n.once.Do(n.ts.Close) }

// cluster is a region: cache nodes over one directory origin, and a Store
// reading through them.
type cluster struct {
	dir   *dir.Store
	nodes []*testNode
	store *httporigin.Store
}

func newCluster(t *testing.T, nodes int, edit func(*httporigin.Config)) *cluster {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{dir: d}
	var urls []string
	for i := 0; i < nodes; i++ {
		n := startNode(t, d, 0)
		c.nodes = append(c.nodes, n)
		urls = append(urls, n.URL())
	}
	cfg := httporigin.Config{Nodes: urls, Token: token}
	if edit != nil {
		edit(&cfg)
	}
	c.store, err = httporigin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// node returns the test node serving url.
func (c *cluster) node(url string) *testNode {
	for _, n := range c.nodes {
		if n.URL() == url {
			return n
		}
	}
	c.nodes[0].t.Fatalf("no node at %s", url)
	return nil
}

// roundTripper counts requests and answers by status, and can fail them.
type roundTripper struct {
	next http.RoundTripper

	mu       sync.Mutex // guards the fields below
	byStatus map[int]int
	byHost   map[string]int
	inm      []string
}

func newRoundTripper() *roundTripper {
	return &roundTripper{next: http.DefaultTransport, byStatus: map[int]int{}, byHost: map[string]int{}}
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.byHost[req.URL.Host]++
	if v := req.Header.Get("If-None-Match"); v != "" {
		rt.inm = append(rt.inm, v)
	}
	if err == nil {
		rt.byStatus[resp.StatusCode]++
	}
	return resp, err
}

func (rt *roundTripper) status(code int) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.byStatus[code]
}

func (rt *roundTripper) host(h string) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.byHost[h]
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}
