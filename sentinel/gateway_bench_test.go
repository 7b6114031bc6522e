package sentinel

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkProxy compares, in one run, requests through the sentinel (route
// lookup + API-key check + proxy) with requests through a plain
// httputil.ReverseProxy to the same upstream. Both go over real loopback
// HTTP with keep-alive clients; p99 is reported as a custom metric.
//
//	go test -run '^$' -bench BenchmarkProxy -benchtime 20000x -count 5 ./sentinel/
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello from upstream"))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	tr := func() *http.Transport {
		return &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
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
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			client := &http.Client{Transport: tr()}
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				local := make([]time.Duration, 0, 1024)
				for pb.Next() {
					req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
					req.Host = "bench.example.com"
					req.Header.Set("Authorization", "Bearer bench-key")
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					local = append(local, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			})
			b.StopTimer()
			if len(lat) > 0 {
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			}
		})
	}
}
