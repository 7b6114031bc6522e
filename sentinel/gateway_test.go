package sentinel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// mapSource is an in-memory Source for unit tests of the request path; the
// end-to-end tests run the gateway over a real node.
type mapSource struct {
	mu  sync.Mutex
	m   map[string]record.Record
	err error
}

func (s *mapSource) Get(ctx context.Context, ns, key string) (record.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return record.Record{}, s.err
	}
	r, ok := s.m[ns+"/"+key]
	if !ok {
		return record.Record{}, origin.ErrNotFound
	}
	return r, nil
}

func (s *mapSource) put(t *testing.T, ns, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]record.Record{}
	}
	old := s.m[ns+"/"+key]
	s.m[ns+"/"+key] = record.Record{Namespace: ns, Key: key, Value: b, Version: old.Version + 1}
}

func (s *mapSource) del(ns, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m[ns+"/"+key]
	s.m[ns+"/"+key] = record.Record{Namespace: ns, Key: key, Version: old.Version + 1, Tombstone: true}
}

// upstream records what it saw and answers with its name.
func upstream(t *testing.T, name string) (*httptest.Server, chan *http.Request) {
	seen := make(chan *http.Request, 100)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r:
		default:
		}
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return s, seen
}

// deadAddr returns an http URL on which nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func newGateway(t *testing.T, src Source, mod func(*Config)) *httptest.Server {
	cfg := Config{Source: src, Now: func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(g)
	t.Cleanup(s.Close)
	return s
}

func do(t *testing.T, gw *httptest.Server, host, authz string) (int, string) {
	t.Helper()
	return testkit.Get(t, gw.URL+"/hello?x=1", host, authz)
}

func TestGatewayRoutingAndKeys(t *testing.T) {
	up, seen := upstream(t, "app")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "open.example.com", Route{DeploymentID: "dep1", Upstreams: []string{up.URL}})
	src.put(t, RoutesNamespace, "api.example.com", Route{DeploymentID: "dep2", Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks1"})
	past := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	future := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	src.put(t, KeysNamespace, KeyRecordKey("ks1", "good-key"), APIKey{KeyID: "key_good", Enabled: true, Expires: &future})
	src.put(t, KeysNamespace, KeyRecordKey("ks1", "disabled-key"), APIKey{KeyID: "key_off", Enabled: false})
	src.put(t, KeysNamespace, KeyRecordKey("ks1", "expired-key"), APIKey{KeyID: "key_old", Enabled: true, Expires: &past})
	src.put(t, KeysNamespace, KeyRecordKey("ks2", "other-keyspace"), APIKey{KeyID: "key_ks2", Enabled: true})
	src.put(t, KeysNamespace, KeyRecordKey("ks1", "deleted-key"), APIKey{KeyID: "key_del", Enabled: true})
	src.del(KeysNamespace, KeyRecordKey("ks1", "deleted-key"))
	gw := newGateway(t, src, nil)

	for _, tc := range []struct {
		name, host, authz string
		status            int
		body              string
	}{
		{"open route", "open.example.com", "", 200, "app"},
		{"host with port and case", "OPEN.example.com:8443", "", 200, "app"},
		{"unknown host", "nope.example.com", "", 404, "no route for host nope.example.com"},
		{"missing key", "api.example.com", "", 401, "missing API key"},
		{"malformed authz", "api.example.com", "Basic Zm9vOmJhcg==", 401, "malformed Authorization"},
		{"bearer without key", "api.example.com", "Bearer ", 401, "malformed Authorization"},
		{"wrong key", "api.example.com", "Bearer wrong-key", 401, "unknown API key"},
		{"key of another keyspace", "api.example.com", "Bearer other-keyspace", 401, "unknown API key"},
		{"deleted key", "api.example.com", "Bearer deleted-key", 401, "unknown API key"},
		{"disabled key", "api.example.com", "Bearer disabled-key", 403, "disabled"},
		{"expired key", "api.example.com", "Bearer expired-key", 403, "expired"},
		{"good key", "api.example.com", "Bearer good-key", 200, "app"},
		{"good key, lower-case scheme", "api.example.com", "bearer good-key", 200, "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(seen) > 0 {
				<-seen
			}
			status, body := do(t, gw, tc.host, tc.authz)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("status %d body %q, want %d containing %q", status, body, tc.status, tc.body)
			}
			if status >= 400 {
				var eb errorBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error == "" {
					t.Fatalf("error body %q is not JSON {error: ...}", body)
				}
				if len(seen) != 0 {
					t.Fatalf("a rejected request reached the upstream")
				}
				return
			}
			r := <-seen
			if r.URL.Path != "/hello" || r.URL.RawQuery != "x=1" {
				t.Fatalf("upstream saw %s?%s", r.URL.Path, r.URL.RawQuery)
			}
			if r.Header.Get("Authorization") != "" {
				t.Fatalf("raw key forwarded upstream")
			}
			if tc.authz != "" && r.Header.Get("X-Dataplane-Key-Id") != "key_good" {
				t.Fatalf("key id header = %q", r.Header.Get("X-Dataplane-Key-Id"))
			}
			if r.Header.Get("X-Dataplane-Deployment-Id") == "" {
				t.Fatalf("deployment id not passed upstream")
			}
		})
	}
}

func TestGatewayRouteChangeSeen(t *testing.T) {
	a, _ := upstream(t, "A")
	b, _ := upstream(t, "B")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "x.example.com", Route{Upstreams: []string{a.URL}})
	gw := newGateway(t, src, nil)
	if _, body := do(t, gw, "x.example.com", ""); body != "A" {
		t.Fatalf("before change: %q", body)
	}
	src.put(t, RoutesNamespace, "x.example.com", Route{Upstreams: []string{b.URL}})
	if _, body := do(t, gw, "x.example.com", ""); body != "B" {
		t.Fatalf("after change: %q (parsed route memo not keyed by version?)", body)
	}
	src.del(RoutesNamespace, "x.example.com")
	if status, _ := do(t, gw, "x.example.com", ""); status != 404 {
		t.Fatalf("after delete: %d, want 404", status)
	}
}

func TestGatewayFailover(t *testing.T) {
	live, _ := upstream(t, "live")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "f.example.com", Route{Upstreams: []string{deadAddr(t), live.URL, deadAddr(t)}})
	src.put(t, RoutesNamespace, "dead.example.com", Route{Upstreams: []string{deadAddr(t), deadAddr(t)}})
	gw := newGateway(t, src, nil)
	for i := 0; i < 9; i++ { // every starting point of the round robin
		if status, body := do(t, gw, "f.example.com", ""); status != 200 || body != "live" {
			t.Fatalf("request %d: %d %q, want the live upstream", i, status, body)
		}
	}
	if status, body := do(t, gw, "dead.example.com", ""); status != 502 || !strings.Contains(body, "no upstream") {
		t.Fatalf("all upstreams dead: %d %q, want 502", status, body)
	}
}

func TestGatewayRoundRobin(t *testing.T) {
	a, _ := upstream(t, "A")
	b, _ := upstream(t, "B")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "rr.example.com", Route{Upstreams: []string{a.URL, b.URL}})
	gw := newGateway(t, src, nil)
	got := map[string]int{}
	for i := 0; i < 10; i++ {
		_, body := do(t, gw, "rr.example.com", "")
		got[body]++
	}
	if got["A"] != 5 || got["B"] != 5 {
		t.Fatalf("round robin over two upstreams: %v", got)
	}
}

func TestGatewaySlowUpstreamIsolated(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	fast, _ := upstream(t, "fast")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "slow.example.com", Route{Upstreams: []string{slow.URL}})
	src.put(t, RoutesNamespace, "fast.example.com", Route{Upstreams: []string{fast.URL}})
	gw := newGateway(t, src, func(c *Config) { c.UpstreamTimeout = 300 * time.Millisecond })

	done := make(chan int, 5)
	for i := 0; i < 5; i++ {
		go func() { s, _ := do(t, gw, "slow.example.com", ""); done <- s }()
	}
	for i := 0; i < 20; i++ {
		if status, body := do(t, gw, "fast.example.com", ""); status != 200 || body != "fast" {
			t.Fatalf("fast route blocked by a slow one: %d %q", status, body)
		}
	}
	for i := 0; i < 5; i++ {
		if s := <-done; s != http.StatusGatewayTimeout {
			t.Fatalf("slow upstream: %d, want 504", s)
		}
	}
}

func TestGatewaySourceErrors(t *testing.T) {
	src := &mapSource{err: fmt.Errorf("boom: %w", origin.ErrUnavailable)}
	gw := newGateway(t, src, nil)
	if status, _ := do(t, gw, "x.example.com", ""); status != 503 {
		t.Fatalf("source down with nothing cached: %d, want 503", status)
	}
	src2 := &mapSource{}
	src2.mu.Lock()
	src2.m = map[string]record.Record{"routes/bad.example.com": {Namespace: "routes", Key: "bad.example.com", Value: []byte("{not json"), Version: 1}}
	src2.mu.Unlock()
	gw2 := newGateway(t, src2, nil)
	if status, body := do(t, gw2, "bad.example.com", ""); status != 502 || !strings.Contains(body, "misconfigured") {
		t.Fatalf("corrupt route: %d %q, want 502 misconfigured", status, body)
	}
}

func TestGatewayBadHost(t *testing.T) {
	gw := newGateway(t, &mapSource{}, nil)
	for _, h := range []string{"a/b", "user@host", strings.Repeat("a", 300)} {
		if status, _ := do(t, gw, h, ""); status != 400 {
			t.Errorf("host %q: %d, want 400", h, status)
		}
	}
}

func TestGatewayStreaming(t *testing.T) {
	next := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next
		fmt.Fprint(w, "data: two\n\n")
	}))
	t.Cleanup(sse.Close)
	src := &mapSource{}
	src.put(t, RoutesNamespace, "sse.example.com", Route{Upstreams: []string{sse.URL}})
	gw := newGateway(t, src, nil)
	req, _ := http.NewRequest("GET", gw.URL+"/events", nil)
	req.Host = "sse.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event before the stream ended: %q %v", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Fatalf("second event: %q", rest)
	}
}

func TestGatewayWebsocketUpgrade(t *testing.T) {
	// An upstream that accepts an Upgrade and then echoes raw bytes.
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	t.Cleanup(ws.Close)
	src := &mapSource{}
	src.put(t, RoutesNamespace, "ws.example.com", Route{Upstreams: []string{ws.URL}})
	gw := newGateway(t, src, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "ping-123")
	buf := make([]byte, 8)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping-123" {
		t.Fatalf("echo through the upgraded connection: %q %v", buf, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("missing source: %v", err)
	}
	if _, err := New(Config{Source: &mapSource{}, Proxy: Proxy{DialTimeout: -1}}); err == nil || !strings.Contains(err.Error(), "DialTimeout") {
		t.Fatalf("negative timeout: %v", err)
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"upstreams":["http://127.0.0.1:1"]}`, true},
		{`{"upstreams":["https://a.internal/"]}`, true},
		{`{"upstreams":[]}`, false},
		{`{"upstreams":["ftp://x"]}`, false},
		{`{"upstreams":["http://x/path"]}`, false},
		{`{"upstreams":["http://u:p@x"]}`, false},
		{`{"upstreams":["http://x"],"require_key":true}`, false},
		{`not json`, false},
	} {
		_, _, err := ParseRoute([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("ParseRoute(%s) = %v", tc.in, err)
		}
		if err != nil && !errors.Is(err, ErrBadValue) {
			t.Errorf("ParseRoute(%s): error does not wrap ErrBadValue", tc.in)
		}
	}
}

// TestGatewayFailoverWithBody sends requests with bodies, small and 1 MiB,
// with and without a Content-Length (streamed), through a route whose
// upstreams are [dead, live]: every one reaches the live upstream with its
// body intact, whichever upstream the round robin tried first.
func TestGatewayFailoverWithBody(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s %d %x", r.Method, n, h.Sum(nil))
	}))
	t.Cleanup(live.Close)
	src := &mapSource{}
	src.put(t, RoutesNamespace, "b.example.com", Route{Upstreams: []string{deadAddr(t), live.URL}})
	gw := newGateway(t, src, nil)

	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name     string
		method   string
		body     []byte
		streamed bool
	}{
		{"POST", "POST", []byte(`{"hello":"world"}`), false},
		{"PUT", "PUT", []byte("replace me"), false},
		{"PATCH streamed", "PATCH", []byte("a small streamed body"), true},
		{"POST 1 MiB", "POST", big, false},
		{"PUT 1 MiB streamed", "PUT", big, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 2; i++ { // both starting points of the round robin
				var body io.Reader = bytes.NewReader(tc.body)
				if tc.streamed {
					pr, pw := io.Pipe()
					go func() {
						for b := tc.body; len(b) > 0; {
							n := min(len(b), 64<<10)
							if _, err := pw.Write(b[:n]); err != nil {
								return
							}
							b = b[n:]
						}
						pw.Close()
					}()
					body = pr
				}
				req, _ := http.NewRequest(tc.method, gw.URL+"/upload", body)
				req.Host = "b.example.com"
				if tc.streamed {
					req.ContentLength = -1
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("%s %d %x", tc.method, len(tc.body), sha256.Sum256(tc.body))
				if resp.StatusCode != 200 || string(b) != want {
					t.Fatalf("attempt %d: %d %q, want 200 %q", i, resp.StatusCode, b, want)
				}
			}
		})
	}
}

// hangupUpstream accepts connections, reads a request's headers and some of
// its body, and closes the connection without answering: a request that
// reached an upstream and may have had effects there.
func hangupUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					io.CopyN(io.Discard, r.Body, 3)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestGatewayNoReplayAfterReach: a POST (and a PUT) that reached an
// upstream which then hung up is answered 502 and never sent to the next
// upstream; only requests that started on the live one reach it.
func TestGatewayNoReplayAfterReach(t *testing.T) {
	var reached atomic.Int64
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "live")
	}))
	t.Cleanup(live.Close)
	src := &mapSource{}
	src.put(t, RoutesNamespace, "h.example.com", Route{Upstreams: []string{hangupUpstream(t), live.URL}})
	gw := newGateway(t, src, nil)
	codes := map[int]int{}
	for i := 0; i < 4; i++ {
		method := []string{"POST", "PUT"}[i%2]
		req, _ := http.NewRequest(method, gw.URL+"/charge", strings.NewReader("amount=100"))
		req.Host = "h.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 2 || codes[502] != 2 || reached.Load() != 2 {
		t.Fatalf("statuses %v, live upstream reached %d times; want 2 answered by live, 2 failed with 502 and not replayed", codes, reached.Load())
	}
}

// TestMemoBounded: the memo holds at most about its size, a flood of new
// keys does not clear it (a key read all along survives), and a changed
// version is a miss.
func TestMemoBounded(t *testing.T) {
	m, err := newMemo(1000)
	if err != nil {
		t.Fatal(err)
	}
	m.put(RoutesNamespace, "hot", 1, "hot value")
	for i := 0; i < 20_000; i++ {
		m.put(RoutesNamespace, fmt.Sprintf("h%d", i), 1, i)
		if _, ok := m.get(RoutesNamespace, "hot", 1); !ok && i > 0 && i%1000 == 0 {
			t.Fatalf("the hot key was dropped after %d new keys", i)
		}
	}
	m.c.CleanUp()
	if n := m.c.EstimatedSize(); n > 1100 {
		t.Fatalf("memo holds %d entries, bound 1000", n)
	}
	if v, ok := m.get(RoutesNamespace, "hot", 1); !ok || v != "hot value" {
		t.Fatalf("hot key: %v %v", v, ok)
	}
	if _, ok := m.get(RoutesNamespace, "hot", 2); ok {
		t.Fatal("a newer version was answered from the memo")
	}
}

// TestKeyIDHeaderConfiguredInLowerCase: the gateway sets and deletes its
// headers in the header map directly, under canonical names; a key id
// header configured in another case must still replace a client's spoofed
// one, not travel next to it. The deployment id header is set on every
// request of a route, the memoized ones too.
func TestKeyIDHeaderConfiguredInLowerCase(t *testing.T) {
	up, seen := upstream(t, "ok")
	src := &mapSource{}
	src.put(t, RoutesNamespace, "k.example.com", Route{DeploymentID: "dep-1", Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks"})
	src.put(t, KeysNamespace, KeyRecordKey("ks", "sk_good"), APIKey{KeyID: "key_good", Enabled: true})
	gw := newGateway(t, src, func(c *Config) { c.KeyIDHeader = "x-my-key-id" })
	for i := range 3 { // the first request parses route and key, the others reuse them
		req, _ := http.NewRequest("GET", gw.URL+"/", nil)
		req.Host = "k.example.com"
		req.Header.Set("Authorization", "Bearer sk_good")
		req.Header.Set("X-My-Key-Id", "key_admin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		r := <-seen
		if got := r.Header.Values("X-My-Key-Id"); len(got) != 1 || got[0] != "key_good" {
			t.Fatalf("request %d: the upstream saw key id header %q, want only the verified key_good", i, got)
		}
		if got := r.Header.Values("X-Dataplane-Deployment-Id"); len(got) != 1 || got[0] != "dep-1" {
			t.Fatalf("request %d: the upstream saw deployment id %q, want dep-1", i, got)
		}
		if r.Header.Get("Authorization") != "" {
			t.Fatalf("request %d: raw key forwarded upstream", i)
		}
	}
	src.put(t, RoutesNamespace, "open.example.com", Route{Upstreams: []string{up.URL}})
	req, _ := http.NewRequest("GET", gw.URL+"/", nil)
	req.Host = "open.example.com"
	req.Header.Set("X-My-Key-Id", "key_admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-seen; r.Header.Get("X-My-Key-Id") != "" {
		t.Fatalf("the upstream of an open route saw the client's key id %q", r.Header.Get("X-My-Key-Id"))
	}
}

// TestLargeBodiesThroughPooledBuffers: bodies of several copy buffers pass
// intact, request after request, through the proxy's pooled buffers (a
// buffer handed out twice at once would mix two responses).
func TestLargeBodiesThroughPooledBuffers(t *testing.T) {
	body := func(seed byte) []byte {
		b := make([]byte, 3*copyBufferSize+123)
		for i := range b {
			b[i] = seed + byte(i%251)
		}
		return b
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.Atoi(r.URL.Query().Get("seed"))
		w.Write(body(byte(seed)))
	}))
	t.Cleanup(up.Close)
	src := &mapSource{}
	src.put(t, RoutesNamespace, "big.example.com", Route{Upstreams: []string{up.URL}})
	gw := newGateway(t, src, nil)
	var wg sync.WaitGroup
	for seed := range 8 {
		wg.Go(func() {
			for range 4 {
				req, _ := http.NewRequest("GET", gw.URL+"/?seed="+strconv.Itoa(seed), nil)
				req.Host = "big.example.com"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(got, body(byte(seed))) {
					t.Errorf("seed %d: %d bytes, err %v, not the upstream's body", seed, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b := (copyBuffers{}).Get(); len(b) != copyBufferSize {
		t.Fatalf("pool buffer of %d bytes", len(b))
	}
}
