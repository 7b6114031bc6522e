package sentinel

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"
)

// BenchmarkGatewayServe calls ServeHTTP of the sentinel and of a plain
// httputil.ReverseProxy directly, one request at a time, with a response
// recorder in place of the client's connection: what is left is each
// proxy's own work plus one loopback round trip to the same upstream, so
// allocs/op (and instructions under callgrind) show the sentinel's share
// without the client side's syscalls and scheduling.
//
//	go test -run '^$' -bench BenchmarkGatewayServe -benchmem ./sentinel/
func BenchmarkGatewayServe(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from upstream"))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	tr := func() *http.Transport {
		return &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	}
	plain := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.Out.Host = pr.In.Host; pr.SetXForwarded() },
		Transport: tr(),
	}
	src := &mapSource{}
	tb := &testing.T{}
	src.put(tb, RoutesNamespace, "bench.example.com", Route{DeploymentID: "d", Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks"})
	src.put(tb, KeysNamespace, KeyRecordKey("ks", "bench-key"), APIKey{KeyID: "k1", Enabled: true})
	gw, err := New(Config{Source: src, Transport: tr()})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"plain-reverseproxy", plain}, {"sentinel", gw}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", "http://bench.example.com/x", nil)
				req.Header.Set("Authorization", "Bearer bench-key")
				rec := httptest.NewRecorder()
				tc.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
