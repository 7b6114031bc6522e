package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "dataplane_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	srv := httptest.NewServer(Handler(Config{
		Ready:    ready.Load,
		Gatherer: reg,
		Token:    "s3cret",
		Inspect: func(ns, key string) (Inspection, bool) {
			if key != "a.example.com" {
				return Inspection{}, false
			}
			return Inspection{Namespace: ns, Key: key, Version: 42}, true
		},
		Detail: func() any { return map[string]int{"loaded": 7} },
	}))
	defer srv.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, path, token string
		status            int
		body              string
	}{
		{"healthz", "/healthz", "", 200, "ok"},
		{"readyz before warm", "/readyz", "", 503, "warming"},
		{"readyz detail", "/readyz", "", 503, `"detail":{"loaded":7}`},
		{"metrics", "/metrics", "", 200, "dataplane_test_total 1"},
		{"debug without token", "/debug/records/routes/a.example.com", "", 401, "admin token"},
		{"debug wrong token", "/debug/records/routes/a.example.com", "s3creT", 401, "admin token"},
		{"debug", "/debug/records/routes/a.example.com", "s3cret", 200, `"version":"000000000000002a"`},
		{"debug token as a prefix", "/debug/records/routes/a.example.com", "s3cretX", 401, "admin token"},
		{"debug not cached", "/debug/records/routes/b.example.com", "s3cret", 404, "not cached"},
		{"debug bad namespace", "/debug/records/BAD/x", "s3cret", 400, "namespace"},
		{"members absent", "/debug/members", "s3cret", 404, "not in a gossip cluster"},
	} {
		status, body := get(tc.path, tc.token)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d containing %q", tc.name, status, body, tc.status, tc.body)
		}
	}
	ready.Store(true)
	if status, _ := get("/readyz", ""); status != 200 {
		t.Fatalf("readyz after warm: %d", status)
	}
}

func TestEmptyTokenDisablesDebug(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/debug/members", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("debug with no configured token: %d, want 403", resp.StatusCode)
	}
}
