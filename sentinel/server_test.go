package sentinel_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/tlsconfig"
	"github.com/dataplane/dataplane/internal/tlsconfig/tlstest"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/sentinel"
)

// dirServer is a sentinel over a directory origin, with upstreamBodies
// receiving the size of every body that reached the upstream.
type dirServer struct {
	srv     *sentinel.Server
	bodies  chan int
	logs    *testkit.SyncBuffer
	keyless string // host that needs no key
}

func startDirServer(t *testing.T, edit func(*sentinel.ServerConfig)) *dirServer {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ds := &dirServer{bodies: make(chan int, 16), logs: &testkit.SyncBuffer{}, keyless: "open.example.com"}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		ds.bodies <- int(n)
		fmt.Fprintf(w, "upstream ok key=%s", r.Header.Get("X-Dataplane-Key-Id"))
	}))
	t.Cleanup(up.Close)
	log := slog.New(slog.NewTextHandler(ds.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pub, err := publisher.New(d, publisher.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	put := func(ns, key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := pub.Put(context.Background(), ns, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put(sentinel.RoutesNamespace, ds.keyless, sentinel.Route{Upstreams: []string{up.URL}})
	put(sentinel.RoutesNamespace, "app.example.com", sentinel.Route{Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks"})
	// A route to an upstream nothing listens on: its failures are logged.
	put(sentinel.RoutesNamespace, "dead.example.com", sentinel.Route{Upstreams: []string{"http://127.0.0.1:1"}, RequireKey: true, Keyspace: "ks"})
	put(sentinel.KeysNamespace, sentinel.KeyRecordKey("ks", "sk_live_good_SECRET"), sentinel.APIKey{KeyID: "key_1", Enabled: true})
	put(sentinel.KeysNamespace, sentinel.KeyRecordKey("ks", "sk_live_disabled_SECRET"), sentinel.APIKey{KeyID: "key_2", Enabled: false})
	reg := prometheus.NewRegistry()
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: d, Registerer: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sentinel.ServerConfig{
		Node: n, Listener: loopback(t), AdminListener: loopback(t), AdminToken: "adm_token_SECRET",
		Logger: log, Registerer: reg,
	}
	if edit != nil {
		edit(&cfg)
	}
	ds.srv, err = sentinel.Start(cfg)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.srv.Shutdown(context.Background()); n.Close() })
	return ds
}

func do(t *testing.T, c *http.Client, method, url, host, authz string, body io.Reader) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestServerTLS serves the gateway over TLS and the admin listener over
// mutual TLS, on loopback with certificates made for the test.
func TestServerTLS(t *testing.T) {
	t.Parallel()
	certs := tlstest.New(t)
	gwTLS, err := tlsconfig.Server{CertFile: certs.ServerCert, KeyFile: certs.ServerKey}.Config()
	if err != nil {
		t.Fatal(err)
	}
	admTLS, err := tlsconfig.Server{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	ds := startDirServer(t, func(c *sentinel.ServerConfig) { c.TLS, c.AdminTLS = gwTLS, admTLS })
	trusted := tlstest.HTTPClient(t, tlsconfig.Client{CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}, 5*time.Second)
	noCert := tlstest.HTTPClient(t, tlsconfig.Client{CAFile: certs.CA}, 5*time.Second)
	gw, adm := "https://"+ds.srv.Addr()+"/", "https://"+ds.srv.AdminAddr()

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		host   string
		authz  string
		status int // 0: the connection is refused
	}{
		{"gateway over TLS", noCert, gw, "app.example.com", "Bearer sk_live_good_SECRET", 200},
		{"gateway plain HTTP refused", http.DefaultClient, "http://" + ds.srv.Addr() + "/", "app.example.com", "Bearer sk_live_good_SECRET", 400},
		{"admin with client certificate", trusted, adm + "/healthz", "", "", 200},
		{"admin debug with certificate and token", trusted, adm + "/debug/records/routes/app.example.com", "", "Bearer adm_token_SECRET", 200},
		{"admin debug with certificate, no token", trusted, adm + "/debug/records/routes/app.example.com", "", "", 401},
		{"admin without client certificate", noCert, adm + "/healthz", "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := do(t, tc.client, "GET", tc.url, tc.host, tc.authz, nil)
			if tc.status == 0 {
				if err == nil {
					t.Fatalf("status %d %q, want the handshake refused", status, body)
				}
				return
			}
			if err != nil || status != tc.status {
				t.Fatalf("status %d %q err %v, want %d", status, body, err, tc.status)
			}
		})
	}
}

// TestServerBodyLimit: with MaxRequestBody, a request declaring a larger body
// gets 413 and nothing reaches the upstream; one within the limit passes.
func TestServerBodyLimit(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	ds := startDirServer(t, func(c *sentinel.ServerConfig) { c.MaxRequestBody = limit })
	url := "http://" + ds.srv.Addr() + "/upload"
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"within", limit, 200},
		{"over", limit + 1, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := do(t, http.DefaultClient, "POST", url, ds.keyless, "", bytes.NewReader(make([]byte, tc.size)))
			if err != nil || status != tc.status {
				t.Fatalf("status %d %q err %v, want %d", status, body, err, tc.status)
			}
			select {
			case n := <-ds.bodies:
				if tc.status != 200 {
					t.Fatalf("the upstream received %d bytes of a refused request", n)
				}
			default:
				if tc.status == 200 {
					t.Fatal("the upstream received nothing")
				}
			}
		})
	}
	// A chunked body (no declared length) streaming past the limit is cut
	// off: the upstream never receives a whole request.
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 256)
		for i := 0; i < 64; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	status, body, err := do(t, http.DefaultClient, "POST", url, ds.keyless, "", pr)
	pr.Close()
	if err == nil && status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body over the limit: %d %q, want 413", status, body)
	}
	select {
	case n := <-ds.bodies:
		if n > limit {
			t.Fatalf("the upstream received %d bytes, over the limit", n)
		}
	default:
	}

	// Headers over 64 KiB get 431.
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = ds.keyless
	req.Header.Set("X-Big", strings.Repeat("x", 80<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d, want 431", resp.StatusCode)
	}
}

// TestNoSecretsInLogs sends requests with good, wrong, disabled and malformed
// API keys and admin tokens, with the logger at debug level, and checks that
// none of the raw secrets appears in what was logged.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	ds := startDirServer(t, nil)
	gw, adm := "http://"+ds.srv.Addr()+"/", "http://"+ds.srv.AdminAddr()
	secrets := []string{"sk_live_good_SECRET", "sk_live_disabled_SECRET", "sk_live_unknown_SECRET", "adm_token_SECRET", "adm_wrong_SECRET"}
	for _, tc := range []struct {
		url, host, authz string
		status           int
	}{
		{gw, "app.example.com", "Bearer sk_live_good_SECRET", 200},
		{gw, "app.example.com", "Bearer sk_live_disabled_SECRET", 403},
		{gw, "app.example.com", "Bearer sk_live_unknown_SECRET", 401},
		{gw, "app.example.com", "Basic sk_live_unknown_SECRET", 401},
		{gw, "nowhere.example.com", "Bearer sk_live_good_SECRET", 404},
		{gw + "?api_key=sk_live_good_SECRET", "dead.example.com", "Bearer sk_live_good_SECRET", 502},
		{adm + "/debug/records/routes/app.example.com", "", "Bearer adm_token_SECRET", 200},
		{adm + "/debug/records/routes/app.example.com", "", "Bearer adm_wrong_SECRET", 401},
		{adm + "/debug/members", "", "Bearer adm_token_SECRET", 404},
	} {
		if status, body, err := do(t, http.DefaultClient, "GET", tc.url, tc.host, tc.authz, nil); err != nil || status != tc.status {
			t.Fatalf("GET %s (Host %s, %s): %d %q %v, want %d", tc.url, tc.host, tc.authz, status, body, err, tc.status)
		}
	}
	logs := ds.logs.String()
	if logs == "" {
		t.Fatal("nothing was logged: the test would prove nothing")
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain the secret %q:\n%s", s, logs)
		}
	}
}

// TestSlowBodyCutOff: a client dripping its request body slower than
// BodyMinRate gets 408 and the upstream never gets the whole body, while a
// chunked stream that keeps up goes through for longer than BodyTimeout.
func TestSlowBodyCutOff(t *testing.T) {
	t.Parallel()
	ds := startDirServer(t, func(c *sentinel.ServerConfig) {
		c.BodyTimeout = 300 * time.Millisecond
		c.BodyMinRate = 1000
	})

	t.Run("slow", func(t *testing.T) {
		conn, err := net.Dial("tcp", ds.srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n", ds.keyless)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte every 100ms: 10 bytes/s
			for i := 0; i < 100; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}()
		conn.SetReadDeadline(time.Now().Add(8 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a slow body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow body: %d, want 408", resp.StatusCode)
		}
		select {
		case n := <-ds.bodies: // the upstream's read of the cut-off body ends
			if n >= 100000 {
				t.Fatalf("the upstream received the whole body of %d bytes from a slow client", n)
			}
		case <-time.After(5 * time.Second):
		}
	})

	t.Run("stream keeps up", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() { // 2 KiB every 100ms for a second: past BodyTimeout, above BodyMinRate
			chunk := make([]byte, 2048)
			for i := 0; i < 10; i++ {
				time.Sleep(100 * time.Millisecond)
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		status, body, err := do(t, http.DefaultClient, "POST", "http://"+ds.srv.Addr()+"/upload", ds.keyless, "", pr)
		if err != nil || status != 200 {
			t.Fatalf("stream: %d %q %v, want 200", status, body, err)
		}
		if n := <-ds.bodies; n != 10*2048 {
			t.Fatalf("upstream received %d bytes, want %d", n, 10*2048)
		}
	})
}

// loopback returns a listener on a free port of 127.0.0.1; the server
// started on it closes it.
func loopback(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestServerMetricsFromRegisterer: the admin listener's /metrics exposes
// the Registerer when it is a Gatherer (the gateway's metrics there), and
// prometheus.DefaultGatherer when it is not.
func TestServerMetricsFromRegisterer(t *testing.T) {
	t.Parallel()
	metrics := func(ds *dirServer) string {
		t.Helper()
		code, body, err := do(t, http.DefaultClient, "GET", "http://"+ds.srv.AdminAddr()+"/metrics", "", "", nil)
		if err != nil || code != 200 {
			t.Fatalf("/metrics: %d, %v", code, err)
		}
		return body
	}
	if body := metrics(startDirServer(t, nil)); !strings.Contains(body, "dataplane_sentinel_upstream_failovers_total") {
		t.Errorf("/metrics over a *prometheus.Registry lacks the gateway's metrics:\n%.2000s", body)
	}
	wrapped := startDirServer(t, func(c *sentinel.ServerConfig) {
		c.Registerer = prometheus.WrapRegistererWithPrefix("wrapped_", prometheus.NewRegistry())
	})
	if body := metrics(wrapped); strings.Contains(body, "wrapped_") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics over a Registerer that is no Gatherer: want prometheus.DefaultGatherer's, got:\n%.2000s", body)
	}
}

// TestStartClosesListenersOnError: a Start that fails closes the
// listeners it was given, so that a caller need not.
func TestStartClosesListenersOnError(t *testing.T) {
	t.Parallel()
	gw, adm := loopback(t), loopback(t)
	if _, err := sentinel.Start(sentinel.ServerConfig{Listener: gw, AdminListener: adm}); err == nil {
		t.Fatal("Start without a Node succeeded")
	}
	for name, ln := range map[string]net.Listener{"Listener": gw, "AdminListener": adm} {
		// A listener left open would block Accept: the deadline turns that
		// into a timeout error, which fails below.
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Second))
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after a failed Start: Accept: %v, want net.ErrClosed", name, err)
		}
	}
}
