package httporigin_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

func TestFailover(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b := startNode(t, d, 0), startNode(t, d, 0)
	fallback := &counting{Store: d}
	rt := newRoundTripper()
	s, err := httporigin.New(httporigin.Config{
		Nodes: []string{a.URL(), b.URL()}, Fallback: fallback, Token: token,
		HTTPClient: &http.Client{Transport: rt}, NodeBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	r1 := record.Record{Namespace: "routes", Key: "failover.example.com", Value: []byte("1"), Version: 10}
	if err := s.CompareAndSwap(ctx(t), r1, 0); err != nil {
		t.Fatal(err)
	}
	owner, other := a, b
	if s.Owner(r1.Namespace, r1.Key) == b.URL() {
		owner, other = b, a
	}
	host := func(n *testNode) string { u, _ := url.Parse(n.URL()); return u.Host }

	// One node down: reads go to the next node in rendezvous order.
	owner.Stop()
	if got, err := s.Get(ctx(t), r1.Namespace, r1.Key, 0); err != nil || got.Version != 10 {
		t.Fatalf("Get with the owner down: %+v, %v", got, err)
	}
	if other.origin.gets.Load() != 1 || fallback.gets.Load() != 0 {
		t.Fatalf("with the owner down: other node read the origin %d times, fallback %d; want 1, 0", other.origin.gets.Load(), fallback.gets.Load())
	}
	// The failed node is skipped until its backoff ends.
	tried := rt.host(host(owner))
	if _, err := s.Get(ctx(t), r1.Namespace, r1.Key, 0); err != nil {
		t.Fatal(err)
	}
	if rt.host(host(owner)) != tried {
		t.Fatal("a node marked down was tried again within its backoff")
	}

	// Every node down: the fallback origin serves reads and writes.
	other.Stop()
	if got, err := s.Get(ctx(t), r1.Namespace, r1.Key, 0); err != nil || got.Version != 10 {
		t.Fatalf("Get with every node down: %+v, %v", got, err)
	}
	if fallback.gets.Load() != 1 {
		t.Fatalf("fallback reads: %d, want 1", fallback.gets.Load())
	}
	r2 := record.Record{Namespace: r1.Namespace, Key: r1.Key, Value: []byte("2"), Version: 20}
	if err := s.CompareAndSwap(ctx(t), r2, 10); err != nil {
		t.Fatalf("CAS with every node down: %v", err)
	}
	if got, _ := d.Get(ctx(t), r1.Namespace, r1.Key, 0); got.Version != 20 {
		t.Fatalf("CAS through the fallback did not reach the origin: %+v", got)
	}

	// No fallback: ErrUnavailable, naming the key.
	bare, err := httporigin.New(httporigin.Config{Nodes: []string{a.URL(), b.URL()}, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Get(ctx(t), r1.Namespace, r1.Key, 0); !errors.Is(err, origin.ErrUnavailable) || !strings.Contains(err.Error(), r1.Key) {
		t.Fatalf("Get with every node down and no fallback: %v, want ErrUnavailable naming the key", err)
	}
	if err := bare.CompareAndSwap(ctx(t), record.Record{Namespace: "routes", Key: "x", Version: 30}, 20); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("CAS with every node down and no fallback: %v, want ErrUnavailable", err)
	}
	if _, err := bare.ReadLog(ctx(t), 0, 10); !errors.Is(err, origin.ErrUnavailable) {
		t.Fatalf("ReadLog with every node down and no fallback: %v, want ErrUnavailable", err)
	}
}

// A conditional read of an unchanged key is a 304 without a body.
func TestNotModifiedIs304(t *testing.T) {
	rt := newRoundTripper()
	c := newCluster(t, 2, func(cfg *httporigin.Config) { cfg.HTTPClient = &http.Client{Transport: rt} })
	r := record.Record{Namespace: "cfg", Key: "k", Value: []byte("v"), Version: 0x10}
	if err := c.store.CompareAndSwap(ctx(t), r, 0); err != nil {
		t.Fatal(err)
	}
	for i, ifNewer := range []record.Version{0x10, 0x11} {
		if _, err := c.store.Get(ctx(t), "cfg", "k", ifNewer); !errors.Is(err, origin.ErrNotModified) {
			t.Fatalf("Get(ifNewer=%s): %v, want ErrNotModified", ifNewer, err)
		}
		if n := rt.status(304); n != i+1 {
			t.Fatalf("after %d conditional reads: %d 304 answers", i+1, n)
		}
	}
	if got, err := c.store.Get(ctx(t), "cfg", "k", 0x0f); err != nil || got.Version != 0x10 {
		t.Fatalf("Get(ifNewer=0f): %+v, %v", got, err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.inm) != 3 || rt.inm[0] != `"0000000000000010"` {
		t.Fatalf("If-None-Match sent: %q", rt.inm)
	}
	// The node read the origin once: the write put the record in its cache
	// and nothing since needed the origin.
	for _, n := range c.nodes {
		if g := n.origin.gets.Load(); g != 0 {
			t.Fatalf("node %s read the origin %d times, want 0", n.URL(), g)
		}
	}
}

// Answers of a broken or foreign server: corrupt bodies are record.ErrCorrupt
// naming the key; failures of the node itself move to the next node.
func TestBadAnswers(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := startNode(t, d, 0)
	var mode atomic.Value
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other, _ := record.Marshal(record.Record{Namespace: "cfg", Key: "someone-else", Version: 5})
		switch mode.Load().(string) {
		case "garbage":
			w.WriteHeader(200)
			w.Write([]byte("DR\x01garbage"))
		case "other key":
			w.WriteHeader(200)
			w.Write(other)
		case "wrong etag":
			w.Header().Set("ETag", wire.ETag(6))
			w.WriteHeader(200)
			b, _ := record.Marshal(record.Record{Namespace: "cfg", Key: keyFromPath(r), Version: 5})
			w.Write(b)
		case "corrupt code":
			w.WriteHeader(502)
			w.Write([]byte(`{"error":"cfg/x: corrupt encoding","code":"corrupt"}`))
		case "unauthorized":
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"missing or wrong admin token"}`))
		case "plain 500":
			http.Error(w, "boom", 500)
		case "redirect":
			http.Redirect(w, r, "http://127.0.0.1:1/", http.StatusFound)
		case "foreign 404":
			http.NotFound(w, r)
		case "hang":
			<-r.Context().Done()
		}
	}))
	defer bad.Close()

	probe, _ := httporigin.New(httporigin.Config{Nodes: []string{bad.URL, good.URL()}})
	key := ""
	for i := 0; key == ""; i++ {
		if k := fmt.Sprint("k", i); probe.Owner("cfg", k) == bad.URL {
			key = k
		}
	}
	if err := d.CompareAndSwap(ctx(t), record.Record{Namespace: "cfg", Key: key, Value: []byte("good"), Version: 5}, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode string
		want error // nil: the good node answers
	}{
		{"garbage", record.ErrCorrupt},
		{"other key", record.ErrCorrupt},
		{"wrong etag", record.ErrCorrupt},
		{"corrupt code", record.ErrCorrupt},
		{"unauthorized", httporigin.ErrUnauthorized},
		{"plain 500", nil},
		{"redirect", nil},
		{"foreign 404", nil},
		{"hang", nil},
	} {
		mode.Store(tc.mode)
		s, err := httporigin.New(httporigin.Config{Nodes: []string{bad.URL, good.URL()}, Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx(t), "cfg", key, 0)
		if tc.want == nil {
			if err != nil || string(got.Value) != "good" {
				t.Errorf("%s: %+v, %v; want the next node's answer", tc.mode, got, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "cfg/"+key) {
			t.Errorf("%s: %v, want %v naming cfg/%s", tc.mode, err, tc.want, key)
		}
	}
}

func keyFromPath(r *http.Request) string {
	return strings.TrimPrefix(r.URL.Path, wire.RecordsPrefix+"cfg/")
}
