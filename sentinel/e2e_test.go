package sentinel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/sentinel"
)

// env is one sentinel over a real S3-compatible origin.
type env struct {
	s3       *testserver.S3Server
	store    origin.Store
	pub      *publisher.Publisher
	upstream *httptest.Server
	dataDir  string
}

func newEnv(t *testing.T) *env {
	srv := testserver.StartS3(t)
	st, err := s3.New(context.Background(), s3.Config{
		Bucket: "sentinel-e2e", UsePathStyle: true,
		Conn: awsconn.Conn{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, MaxRetries: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.New(st, publisher.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream ok key=%s", r.Header.Get("X-Dataplane-Key-Id"))
	}))
	t.Cleanup(up.Close)
	e := &env{s3: srv, store: st, pub: pub, upstream: up, dataDir: t.TempDir()}
	e.put(t, sentinel.RoutesNamespace, "app.example.com", sentinel.Route{Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks"})
	e.put(t, sentinel.KeysNamespace, sentinel.KeyRecordKey("ks", "sk_live_good"), sentinel.APIKey{KeyID: "key_1", Enabled: true})
	return e
}

func (e *env) put(t *testing.T, ns, key string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if _, err := e.pub.Put(context.Background(), ns, key, b); err != nil {
		t.Fatal(err)
	}
}

// start opens a node with a short fresh window (so the outage tests are past
// it) and a sentinel server over it.
func (e *env) start(t *testing.T) (*dataplane.Node, *sentinel.Server) {
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: 50 * time.Millisecond, Stale: time.Hour}
	copts.RefreshTimeout = 500 * time.Millisecond
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: e.store, Cache: copts, DataDir: e.dataDir, WarmTimeout: time.Second, Registerer: reg,
		Logger:                slog.New(slog.DiscardHandler),
		LocalSnapshotInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sentinel.StartReadHeaderTimeout(sentinel.ServerConfig{
		Node: n, Listener: loopback(t), AdminListener: loopback(t), AdminToken: "adm",
		Registerer: reg,
	}, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()); n.Close() })
	return n, srv
}

func request(t *testing.T, srv *sentinel.Server, key string) (int, string) {
	t.Helper()
	return testkit.Get(t, "http://"+srv.Addr()+"/", "app.example.com", testkit.Bearer(key))
}

// TestServesThroughOriginOutage: with the S3 server stopped, cached routes
// and keys keep being served, past their fresh window; and a sentinel
// restarted while the origin is down warms from its local snapshot files.
func TestServesThroughOriginOutage(t *testing.T) {
	e := newEnv(t)
	n, srv := e.start(t)
	if status, body := request(t, srv, "sk_live_good"); status != 200 || !strings.Contains(body, "key=key_1") {
		t.Fatalf("before outage: %d %q", status, body)
	}
	if status, _ := request(t, srv, "sk_live_wrong"); status != 401 {
		t.Fatalf("wrong key before outage: %d", status)
	}
	if err := e.s3.Stop(); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(600 * time.Millisecond) // many fresh windows
	for i := 0; time.Now().Before(until); i++ {
		if status, body := request(t, srv, "sk_live_good"); status != 200 {
			t.Fatalf("request %d during the outage: %d %q", i, status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held, ok := n.Peek(sentinel.RoutesNamespace, "app.example.com")
	if !ok || !held.Stale {
		t.Fatalf("route during the outage: held=%v stale=%v, want held and marked stale", ok, held.Stale)
	}
	srv.Shutdown(context.Background())
	n.Close()

	// Restart with the origin still down: warm from the local files.
	n2, srv2 := e.start(t)
	if !n2.Ready() {
		t.Fatal("restarted sentinel not ready with the origin down")
	}
	if status, body := request(t, srv2, "sk_live_good"); status != 200 {
		t.Fatalf("after restart with the origin down: %d %q", status, body)
	}
	if resp, err := http.Get("http://" + srv2.AdminAddr() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz after warm restart: %v %v", resp, err)
	}
}

// TestBadRequests: huge headers, bad Host, malformed Authorization and a
// slowloris client each get a clear 4xx or a timeout, and the sentinel
// keeps serving.
func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	_, srv := e.start(t)
	req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/", nil)
	req.Host = "app.example.com"
	req.Header.Set("X-Huge", strings.Repeat("a", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("huge header: %d, want 431", resp.StatusCode)
	}
	for _, authz := range []string{"Bearer", "Token abc", "Bearer a b", "Bearer " + strings.Repeat("k", 600)} {
		req, _ := http.NewRequest("GET", "http://"+srv.Addr()+"/", nil)
		req.Host = "app.example.com"
		req.Header.Set("Authorization", authz)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(b), `"error"`) {
			t.Fatalf("Authorization %.20q: %d %s", authz, resp.StatusCode, b)
		}
	}
	// Raw bad Host.
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: bad host\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.Contains(line, " 400 ") {
		t.Fatalf("bad Host: %q, want 400", line)
	}
	// Slowloris: headers dribbled in are cut off by ReadHeaderTimeout.
	slow, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprint(slow, "GET / HTTP/1.1\r\nHost: app.example.com\r\n")
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	closed := make(chan error, 1)
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := fmt.Fprintf(slow, "X-Slow-%d: 1\r\n", i); err != nil {
				closed <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		closed <- nil
	}()
	// The server gives up on the dribbling client: it answers (408) or
	// closes, well before the client would have finished its headers.
	buf := make([]byte, 64)
	if n, err := slow.Read(buf); err == nil && !strings.Contains(string(buf[:n]), "408") {
		t.Fatalf("slow client got %q, want 408 or a close", buf[:n])
	}
	if err := <-closed; err == nil {
		t.Fatal("the server kept reading a slowloris client's headers for 5s")
	}
	// Meanwhile others are served.
	if status, _ := request(t, srv, "sk_live_good"); status != 200 {
		t.Fatalf("normal request next to a slow client: %d", status)
	}
}

// TestColdSentinelWarmsFromPeer: a new sentinel, started while the S3
// server is down and without local snapshot files, warms from a running
// sentinel's admin listener and serves the cached route and key.
func TestColdSentinelWarmsFromPeer(t *testing.T) {
	e := newEnv(t)
	_, peer := e.start(t)
	if status, body := request(t, peer, "sk_live_good"); status != 200 {
		t.Fatalf("peer before the outage: %d %q", status, body)
	}
	if err := e.s3.Stop(); err != nil {
		t.Fatal(err)
	}
	// As the sentinel command's -peers builds it.
	src := &dataplane.HTTPPeer{URL: "http://" + peer.AdminAddr(), Token: "adm"}
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: e.store, WarmTimeout: time.Second, Peers: []dataplane.SnapshotSource{src},
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sentinel.Start(sentinel.ServerConfig{Node: n, Listener: loopback(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()); n.Close() })
	if !n.Ready() {
		t.Fatal("not ready: should have warmed from the peer")
	}
	if status, body := request(t, srv, "sk_live_good"); status != 200 || !strings.Contains(body, "key=key_1") {
		t.Fatalf("cold sentinel warmed from a peer, origin down: %d %q", status, body)
	}
	if status, _ := request(t, srv, "sk_live_wrong"); status != 401 && status != 503 {
		t.Fatalf("wrong key on the cold sentinel: %d", status)
	}
}
