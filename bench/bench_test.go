package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []SizeWeight
		err  bool
	}{
		{in: "200:80,1024:15,8k:5", want: []SizeWeight{{200, 80}, {1024, 15}, {8192, 5}}},
		{in: "512", want: []SizeWeight{{512, 1}}},
		{in: "", err: true},
		{in: "0:1", err: true},
		{in: "300k:1", err: true},
		{in: "10:0", err: true},
		{in: "x:1", err: true},
	} {
		got, err := ParseSizes(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseSizes(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && FormatSizes(got) != FormatSizes(tc.want) {
			t.Errorf("ParseSizes(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSelectOptions(t *testing.T) {
	for _, tc := range []struct {
		ids  []string
		want []string
		err  bool
	}{
		{ids: nil, want: []string{"1", "2", "3", "4A", "4B", "ours", "ours+tier", "ours-ddb"}},
		{ids: []string{"all"}, want: []string{"1", "2", "3", "4A", "4B", "ours", "ours+tier", "ours-ddb"}},
		{ids: []string{"ours", "4a", "1"}, want: []string{"1", "4A", "ours"}},
		{ids: []string{"5"}, err: true},
	} {
		got, err := SelectOptions(tc.ids)
		if (err != nil) != tc.err {
			t.Errorf("SelectOptions(%v) error %v", tc.ids, err)
			continue
		}
		var ids []string
		for _, o := range got {
			ids = append(ids, o.ID)
		}
		if len(ids) != len(tc.want) {
			t.Errorf("SelectOptions(%v) = %v, want %v", tc.ids, ids, tc.want)
			continue
		}
		for i := range ids {
			if ids[i] != tc.want[i] {
				t.Errorf("SelectOptions(%v) = %v, want %v", tc.ids, ids, tc.want)
			}
		}
	}
}

func TestPresetsValid(t *testing.T) {
	for name, c := range map[string]Config{"default": DefaultConfig(), "quick": QuickConfig()} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := QuickConfig()
	bad.Regions = 9
	if bad.Validate() == nil {
		t.Error("9 regions accepted")
	}
}

func TestQuantiles(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(1000 - i)
	}
	q := quantiles(xs)
	if q.N != 1000 || q.P50 != 500 || q.P99 != 990 || q.P999 != 999 || q.Max != 1000 {
		t.Fatalf("quantiles = %+v", q)
	}
	if (quantiles(nil) != Quantiles{}) {
		t.Fatal("quantiles of nothing not zero")
	}
}

func TestCountingStore(t *testing.T) {
	ctx := context.Background()
	c := &counter{}
	s := countingStore{Store: mem.New(), c: c}
	rec := record.Record{Namespace: ns, Key: "k", Value: make([]byte, 5000), Version: 10}
	if _, err := origin.Publish(ctx, s, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ns, "k", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ns, "k", 10); !errors.Is(err, origin.ErrNotModified) {
		t.Fatalf("conditional get: %v", err)
	}
	if _, err := s.ReadLog(ctx, 0, 10); err != nil {
		t.Fatal(err)
	}
	_, _ = s.GetSnapshot(ctx, ns)
	got := c.snapshot()
	// Publish reads the current version first: a not-found.
	want := OriginCounts{Gets: 1, NotModified: 1, NotFound: 1, LogReads: 1, SnapshotReads: 1, Writes: 1, LogAppends: 1,
		ReadBytes: 5000, WriteBytes: 5000, ReadUnits4K: 2 + 1 + 1 + 1 + 1, WriteUnits1K: 5 + 1}
	if got != want {
		t.Fatalf("counts\n got %+v\nwant %+v", got, want)
	}
	if got.Reads() != 5 {
		t.Fatalf("Reads() = %d, want 5", got.Reads())
	}
}

// TestDelayingTransport checks that requests really reach the server
// through the simulated network, and that the faults refuse them.
func TestDelayingTransport(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	n := newNetwork(1, []string{"a", "b", "c"}, time.Millisecond, 2*time.Millisecond, 0, netsim.Link{})
	get := func(c *http.Client) error {
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name     string
		fault    func()
		from, to string
		toOrigin bool
		refused  bool
	}{
		{name: "plain", from: "a", to: "b", toOrigin: true},
		{name: "origin down refuses origin requests", fault: func() { n.setOriginDown(true) }, from: "b", to: "a", toOrigin: true, refused: true},
		{name: "origin down spares the cache tier", fault: func() { n.setOriginDown(true) }, from: "b", to: "b"},
		{name: "partition refuses across", fault: func() { n.isolate("c") }, from: "c", to: "a", toOrigin: true, refused: true},
		{name: "partition spares the rest", fault: func() { n.isolate("c") }, from: "b", to: "a", toOrigin: true},
		{name: "partition spares inside the region", fault: func() { n.isolate("c") }, from: "c", to: "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { n.setOriginDown(false); n.healAll() })
			if tc.fault != nil {
				tc.fault()
			}
			before := hits.Load()
			err := get(n.client(tc.from, tc.to, tc.toOrigin))
			if tc.refused {
				if !errors.Is(err, syscall.ECONNREFUSED) || hits.Load() != before {
					t.Fatalf("got %v and %d requests at the server, want refused", err, hits.Load()-before)
				}
				return
			}
			if err != nil || hits.Load() != before+1 {
				t.Fatalf("got %v and %d requests at the server, want 1", err, hits.Load()-before)
			}
		})
	}
}

// TestReportJSON checks that a report survives WriteJSON and ReadReport
// (dataplane bench -from renders an earlier run from it), and what
// Measured and PhaseWindow, which the charts read, return.
func TestReportJSON(t *testing.T) {
	dir := t.TempDir()
	res := &Result{
		Option:        Options()[0],
		SteadySeconds: 3,
		Phases:        []PhaseStart{{phaseWarmup, 0.1}, {phaseSteady, 1}, {phaseOutage, 4}, {phaseRecover, 5}},
	}
	rep := &Report{Config: QuickConfig(), Results: []*Result{res, {Option: Options()[1], Skipped: "no server"}}}
	if err := rep.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(filepath.Join(dir, "r.json"))
	if err != nil || len(back.Results) != 2 || back.Results[1].Skipped != "no server" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	if m := back.Measured(); len(m) != 1 || m[0].Option.ID != res.Option.ID {
		t.Fatalf("Measured = %v, want the one option that ran", m)
	}
	for _, tc := range []struct {
		phase    string
		from, to float64
	}{
		{phaseSteady, 1, 4},
		{phaseRecover, 5, 5},
		{phasePartition, -1, -1},
	} {
		if from, to := back.Results[0].PhaseWindow(tc.phase); from != tc.from || to != tc.to {
			t.Errorf("PhaseWindow(%s) = %v, %v; want %v, %v", tc.phase, from, to, tc.from, tc.to)
		}
	}
	if got := back.Results[0].SteadyStart(); got != 1 {
		t.Errorf("SteadyStart = %v, want 1", got)
	}
}

// TestDeployFailureCleansUp checks that a deployment that cannot start
// reports why, and closes what it started without panicking.
func TestDeployFailureCleansUp(t *testing.T) {
	cfg := QuickConfig()
	nw := newNetwork(1, regionNames[:cfg.Regions], cfg.MinDelay, cfg.MaxDelay, cfg.Jitter, netsim.Link{})
	b := &Backends{Missing: map[Backend]string{S3: "not installed"}}
	d, err := deploy(context.Background(), &cfg, Options()[0], nw, b, t.TempDir(), make([]versionCell, cfg.Keys), &timeline{start: time.Now()})
	if err == nil || d != nil {
		t.Fatalf("deploy = %v, %v; want an error", d, err)
	}
	if !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("error %q does not say why", err)
	}
}
