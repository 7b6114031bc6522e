package cachenode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

const token = "write-s3cret"

// The lead wires a node into gossip with the Server as its Applier.
var _ gossip.Applier = (*cachenode.Server)(nil)

// counting wraps a store and counts record reads: what a cache node costs
// its origin.
type counting struct {
	origin.Store
	gets atomic.Int64
}

func (c *counting) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, ns, key, ifNewer)
}

// clock is a settable time for the cache's windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t      *testing.T
	dir    *dir.Store
	origin *counting
	node   *cachenode.Server
	srv    *httptest.Server
	clock  *clock
}

func newFixture(t *testing.T, edit func(*cachenode.Config)) *fixture {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: d, origin: &counting{Store: d}, clock: &clock{now: time.Unix(1_700_000_000, 0)}}
	cfg := cachenode.DefaultConfig()
	cfg.Origin = f.origin
	cfg.WriteToken = token
	cachenode.SetNow(&cfg, f.clock.Now)
	if edit != nil {
		edit(&cfg)
	}
	f.node, err = cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.node)
	t.Cleanup(func() { f.srv.Close(); f.node.Close() })
	return f
}

// do sends a request and returns the answer with its body read.
func (f *fixture) do(method, path string, hdr map[string]string, body []byte) (*http.Response, []byte) {
	f.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, r)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, b
}

func (f *fixture) put(r record.Record) {
	f.t.Helper()
	cur, err := f.dir.Get(context.Background(), r.Namespace, r.Key, 0)
	if err != nil && !errors.Is(err, origin.ErrNotFound) {
		f.t.Fatal(err)
	}
	if err := f.dir.CompareAndSwap(context.Background(), r, cur.Version); err != nil {
		f.t.Fatal(err)
	}
}

var auth = map[string]string{"Authorization": "Bearer " + token}

func errorCode(t *testing.T, b []byte) wire.Code {
	t.Helper()
	var e wire.Error
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("error body %q is not {\"error\": ...}: %v", b, err)
	}
	return e.Code
}

func marshal(t *testing.T, r record.Record) []byte {
	t.Helper()
	b, err := record.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGetRecord(t *testing.T) {
	f := newFixture(t, nil)
	r := record.Record{Namespace: "routes", Key: "api.example.com/v1", Value: []byte(`{"u":1}`), Version: 0x10}
	f.put(r)
	path := wire.RecordPath(r.Namespace, r.Key)

	resp, body := f.do("GET", path, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	got, err := record.Unmarshal(body)
	if err != nil || got.Version != r.Version || !bytes.Equal(got.Value, r.Value) {
		t.Fatalf("GET body: %+v, %v", got, err)
	}
	for h, want := range map[string]string{
		"ETag": `"0000000000000010"`, "Content-Type": wire.ContentTypeRecord, "Age": "0", wire.HeaderStale: "",
	} {
		if v := resp.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}

	for _, tc := range []struct {
		inm    string
		status int
	}{
		{`"0000000000000010"`, 304}, {`"0000000000000011"`, 304}, {`W/"0000000000000010"`, 304},
		{`"000000000000000f"`, 200}, {`"nonsense"`, 400}, {`*`, 400},
	} {
		resp, body := f.do("GET", path, map[string]string{"If-None-Match": tc.inm}, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("If-None-Match %s: %d, want %d", tc.inm, resp.StatusCode, tc.status)
		}
		if tc.status == 304 && (len(body) != 0 || resp.Header.Get("ETag") != `"0000000000000010"`) {
			t.Errorf("304 with body %q, ETag %q", body, resp.Header.Get("ETag"))
		}
	}
	if n := f.origin.gets.Load(); n != 1 {
		t.Errorf("%d origin reads for one key read 7 times while fresh, want 1", n)
	}

	resp, body = f.do("GET", wire.RecordPath("routes", "missing"), nil, nil)
	if resp.StatusCode != 404 || errorCode(t, body) != wire.CodeNotFound || !strings.Contains(string(body), "routes/missing") {
		t.Fatalf("missing key: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do("GET", "/v1/records/BAD/k", nil, nil)
	if resp.StatusCode != 400 || errorCode(t, body) != wire.CodeInvalid || !strings.Contains(string(body), "namespace") {
		t.Fatalf("bad namespace: %d %s", resp.StatusCode, body)
	}

	// A delete written behind the node's back, announced by gossip
	// (Invalidate): the next read fetches it and answers the tombstone.
	f.put(record.Record{Namespace: r.Namespace, Key: r.Key, Version: 0x20, Tombstone: true})
	f.node.Invalidate(r.Namespace, r.Key, 0x20)
	resp, body = f.do("GET", path, nil, nil)
	got, err = record.Unmarshal(body)
	if resp.StatusCode != 200 || err != nil || !got.Tombstone || got.Version != 0x20 {
		t.Fatalf("after delete: %d %+v %v", resp.StatusCode, got, err)
	}
	if resp, _ := f.do("GET", path, map[string]string{"If-None-Match": `"0000000000000020"`}, nil); resp.StatusCode != 304 {
		t.Fatalf("tombstone If-None-Match its version: %d, want 304", resp.StatusCode)
	}
}

func TestStaleAndAge(t *testing.T) {
	f := newFixture(t, func(c *cachenode.Config) {
		c.Cache.Default = cache.Window{Fresh: 10 * time.Second, Stale: time.Hour}
	})
	r := record.Record{Namespace: "cfg", Key: "k", Value: []byte("v"), Version: 5}
	f.put(r)
	f.do("GET", wire.RecordPath("cfg", "k"), nil, nil)
	f.clock.Add(12 * time.Second)
	resp, _ := f.do("GET", wire.RecordPath("cfg", "k"), nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get(wire.HeaderStale) != "1" || resp.Header.Get("Age") != "12" {
		t.Fatalf("past the fresh window: %d, stale %q, Age %q; want 200, 1, 12",
			resp.StatusCode, resp.Header.Get(wire.HeaderStale), resp.Header.Get("Age"))
	}
}

// TestMaxAgeZeroRevalidates: a client asking with "Cache-Control:
// max-age=0" or "no-cache" (httporigin asks so) is not handed the node's
// stale copy while the origin has a newer version: the node reads the
// origin first. Without it the stale copy is answered at once, marked stale.
func TestMaxAgeZeroRevalidates(t *testing.T) {
	for _, tc := range []struct {
		name, cacheControl string
		etag, stale        string
	}{
		{"stale-while-revalidate", "", wire.ETag(5), "1"},
		{"max-age=0", "max-age=0", wire.ETag(6), ""},
		{"no-cache among others", "no-store, No-Cache", wire.ETag(6), ""},
		{"max-age=60", "max-age=60", wire.ETag(5), "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *cachenode.Config) {
				c.Cache.Default = cache.Window{Fresh: 10 * time.Second, Stale: time.Hour}
			})
			f.put(record.Record{Namespace: "cfg", Key: "k", Value: []byte("v5"), Version: 5})
			f.do("GET", wire.RecordPath("cfg", "k"), nil, nil)
			f.put(record.Record{Namespace: "cfg", Key: "k", Value: []byte("v6"), Version: 6})
			f.clock.Add(12 * time.Second)
			hdr := map[string]string{}
			if tc.cacheControl != "" {
				hdr["Cache-Control"] = tc.cacheControl
			}
			resp, _ := f.do("GET", wire.RecordPath("cfg", "k"), hdr, nil)
			if resp.StatusCode != 200 || resp.Header.Get("ETag") != tc.etag || resp.Header.Get(wire.HeaderStale) != tc.stale {
				t.Fatalf("%d, ETag %s, stale %q; want 200, %s, %q", resp.StatusCode,
					resp.Header.Get("ETag"), resp.Header.Get(wire.HeaderStale), tc.etag, tc.stale)
			}
		})
	}
}

func TestCorruptOrigin(t *testing.T) {
	f := newFixture(t, nil)
	good := record.Record{Namespace: "routes", Key: "torn", Value: []byte("good"), Version: 7}
	f.put(good)
	if err := os.WriteFile(f.dir.RecordPath("routes", "torn"), []byte("DR\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Cold: 502 corrupt, naming the key, and nothing cached.
	resp, body := f.do("GET", wire.RecordPath("routes", "torn"), nil, nil)
	if resp.StatusCode != 502 || errorCode(t, body) != wire.CodeCorrupt || !strings.Contains(string(body), "routes/torn") {
		t.Fatalf("cold read of a corrupt object: %d %s, want 502 corrupt naming the key", resp.StatusCode, body)
	}
	if _, held := f.node.Inspect("routes", "torn"); held {
		t.Fatal("a corrupt read was cached")
	}
	// Repaired: served at once.
	if err := os.WriteFile(f.dir.RecordPath("routes", "torn"), marshal(t, good), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, body = f.do("GET", wire.RecordPath("routes", "torn"), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after repair: %d %s", resp.StatusCode, body)
	}
	// Warm: a corrupt object does not displace the good value, which keeps
	// being served, marked stale (invariant 6).
	if err := os.WriteFile(f.dir.RecordPath("routes", "torn"), []byte("DR\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.node.Invalidate("routes", "torn", 8)
	resp, body = f.do("GET", wire.RecordPath("routes", "torn"), nil, nil)
	got, err := record.Unmarshal(body)
	if resp.StatusCode != 200 || err != nil || string(got.Value) != "good" || resp.Header.Get(wire.HeaderStale) != "1" {
		t.Fatalf("warm read of a corrupt object: %d %+v %v stale=%q; want the good value, stale", resp.StatusCode, got, err, resp.Header.Get(wire.HeaderStale))
	}
}

func TestLogAndSnapshots(t *testing.T) {
	f := newFixture(t, nil)
	change := func(key string, v record.Version) []byte {
		b, _ := json.Marshal(wire.FromChange(record.Change{Namespace: "cfg", Key: key, Version: v}))
		return b
	}
	for v := record.Version(1); v <= 3; v++ {
		if resp, body := f.do("POST", "/v1/log", auth, change("k", v*16)); resp.StatusCode != 204 {
			t.Fatalf("POST /v1/log: %d %s", resp.StatusCode, body)
		}
	}
	resp, body := f.do("GET", "/v1/log?after=10&limit=1", nil, nil)
	cs, err := wire.DecodeLogPage(body, 0x10, 1)
	if resp.StatusCode != 200 || err != nil || len(cs) != 1 || cs[0].Version != 0x20 {
		t.Fatalf("GET /v1/log: %d %s (%v)", resp.StatusCode, body, err)
	}
	if resp, _ := f.do("POST", "/v1/log/trim?before=30", auth, nil); resp.StatusCode != 204 {
		t.Fatalf("trim: %d", resp.StatusCode)
	}
	resp, body = f.do("GET", "/v1/log?after=1", nil, nil)
	if resp.StatusCode != 410 || errorCode(t, body) != wire.CodeTruncated {
		t.Fatalf("read before the horizon: %d %s, want 410 truncated", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		body               []byte
		status             int
	}{
		{"append without token", "POST", "/v1/log", nil, change("k", 1), 401},
		{"append bad json", "POST", "/v1/log", auth, []byte("{"), 400},
		{"append unknown field", "POST", "/v1/log", auth, []byte(`{"namespace":"cfg","key":"k","version":"1","extra":1}`), 400},
		{"append empty key", "POST", "/v1/log", auth, change("", 1), 400},
		{"append oversized", "POST", "/v1/log", auth, make([]byte, wire.MaxChangeBody+1), 413},
		{"read bad after", "GET", "/v1/log?after=zz", nil, nil, 400},
		{"read bad limit", "GET", "/v1/log?limit=-1", nil, nil, 400},
		{"trim without before", "POST", "/v1/log/trim", auth, nil, 400},
		{"trim without token", "POST", "/v1/log/trim?before=1", nil, nil, 401},
		{"missing snapshot", "GET", "/v1/snapshots/nope", nil, nil, 404},
		{"snapshot bad namespace", "GET", "/v1/snapshots/NOPE", nil, nil, 400},
	} {
		if resp, body := f.do(tc.method, tc.path, tc.hdr, tc.body); resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}

	snap := record.Snapshot{Namespace: "routes", Version: 9, Records: []record.Record{{Namespace: "routes", Key: "a", Value: []byte("A"), Version: 3}}}
	sb, err := record.MarshalSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := f.do("PUT", "/v1/snapshots/routes", auth, sb); resp.StatusCode != 204 {
		t.Fatalf("PUT snapshot: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.do("PUT", "/v1/snapshots/keys", auth, sb); resp.StatusCode != 400 || !strings.Contains(string(body), "path names keys") {
		t.Fatalf("PUT snapshot under another namespace: %d %s", resp.StatusCode, body)
	}
	resp, body = f.do("GET", "/v1/snapshots/routes", nil, nil)
	got, err := record.UnmarshalSnapshot(body)
	if resp.StatusCode != 200 || err != nil || got.Version != 9 || len(got.Records) != 1 {
		t.Fatalf("GET snapshot: %d %+v %v", resp.StatusCode, got, err)
	}
	small := newFixture(t, func(c *cachenode.Config) { cachenode.SetMaxSnapshotSize(c, 16) })
	if resp, _ := small.do("PUT", "/v1/snapshots/routes", auth, sb); resp.StatusCode != 413 {
		t.Fatalf("snapshot over the size bound: %d, want 413", resp.StatusCode)
	}
}

func TestMetricsAndAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(c *cachenode.Config) { c.Registerer = reg })
	f.put(record.Record{Namespace: "a", Key: "b", Value: []byte("v"), Version: 1})
	f.do("GET", wire.RecordPath("a", "b"), nil, nil)
	f.do("GET", wire.RecordPath("a", "b"), map[string]string{"If-None-Match": wire.ETag(1)}, nil)
	f.do("GET", wire.RecordPath("a", "b"), map[string]string{"If-None-Match": wire.ETag(1)}, nil)
	f.do("GET", wire.RecordPath("a", "missing"), nil, nil)

	want := map[string]float64{
		`dataplane_cachenode_requests_total{code="200",route="get_record"}`: 1,
		`dataplane_cachenode_requests_total{code="304",route="get_record"}`: 2,
		`dataplane_cachenode_requests_total{code="404",route="get_record"}`: 1,
		`dataplane_cache_origin_reads_total{namespace="a"}`:                 2,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	in, ok := f.node.Inspect("a", "b")
	if !ok || in.Version != 1 || in.ValueBytes != 1 || in.Stale {
		t.Fatalf("Inspect: %+v %v", in, ok)
	}
	if !f.node.Ready() {
		t.Fatal("not ready before Close")
	}
	if !f.node.Apply(record.Record{Namespace: "a", Key: "b", Value: []byte("gossip"), Version: 2}) {
		t.Fatal("Apply of a newer version refused")
	}
	_, body := f.do("GET", wire.RecordPath("a", "b"), nil, nil)
	if r, _ := record.Unmarshal(body); string(r.Value) != "gossip" {
		t.Fatalf("after Apply the node serves %+v", r)
	}
	f.node.Close()
	if f.node.Ready() {
		t.Fatal("ready after Close")
	}
	if n := len(gather(t, reg)); n != 0 {
		t.Fatalf("%d series still registered after Close", n)
	}
}

func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			}
		}
	}
	return out
}

func TestNewErrors(t *testing.T) {
	d, _ := dir.Open(t.TempDir())
	for _, tc := range []struct {
		name string
		edit func(*cachenode.Config)
		says string
	}{
		{"no origin", func(c *cachenode.Config) { c.Origin = nil }, "Origin"},
		{"bad cache window", func(c *cachenode.Config) { c.Cache.Default.Fresh = -1 }, "Fresh"},
	} {
		cfg := cachenode.DefaultConfig()
		cfg.Origin = d
		tc.edit(&cfg)
		if _, err := cachenode.New(cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: New = %v, want an error naming %s", tc.name, err, tc.says)
		}
	}
	// A zero Config.Cache means the cache's defaults.
	s, err := cachenode.New(cachenode.Config{Origin: d})
	if err != nil {
		t.Fatalf("New with zero cache options: %v", err)
	}
	s.Close()
}
