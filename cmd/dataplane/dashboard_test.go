package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/sentinel"
)

// recordingRegisterer registers into a real registry and remembers the
// name and variable labels of every metric registered, observed or not.
type recordingRegisterer struct {
	*prometheus.Registry
	mu     sync.Mutex
	labels map[string][]string // metric name → variable labels
}

var descRE = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		if m := descRE.FindStringSubmatch(d.String()); m != nil {
			var ls []string
			for _, l := range strings.Split(m[2], ",") {
				if l = strings.TrimSpace(l); l != "" {
					ls = append(ls, l)
				}
			}
			r.labels[m[1]] = ls
		}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// TestDashboardMetrics checks that every metric the Grafana dashboard
// (deploy/grafana/dataplane.json) queries is registered by a sentinel as
// the sentinel command wires it (node, cache, gossip, gateway), and that
// every label it groups by is one of the metric's labels: a renamed metric
// or label fails here instead of leaving an empty panel.
func TestDashboardMetrics(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/dataplane.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}

	reg := &recordingRegisterer{Registry: prometheus.NewRegistry(), labels: map[string][]string{}}
	fs := flag.NewFlagSet("sentinel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var nf nodeFlags
	nf.register(fs)
	if err := parseFlags(fs, []string{"-origin", "dir://" + t.TempDir(), "-insecure", "-gossip-bind", "127.0.0.1:0", "-name", "dash"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	store, err := nf.openOrigin(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := nf.nodeConfig(store, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	node, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if _, err := sentinel.New(sentinel.Config{Source: sentinel.SourceFunc(node.Record), Registerer: reg, Logger: log}); err != nil {
		t.Fatal(err)
	}

	nameRE := regexp.MustCompile(`\bdataplane_[a-z0-9_]+`)
	byRE := regexp.MustCompile(`\bby \(([^)]*)\)`)
	seen := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			allowed := []string{"le", "instance", "job"}
			names := nameRE.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no dataplane metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				seen++
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if _, ok := reg.labels[n]; !ok && strings.HasSuffix(n, suf) {
						base = strings.TrimSuffix(n, suf)
					}
				}
				ls, ok := reg.labels[base]
				if !ok {
					t.Errorf("panel %q: metric %s is not registered by a sentinel", p.Title, n)
				}
				allowed = append(allowed, ls...)
			}
			for _, m := range byRE.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); !slices.Contains(allowed, l) {
						t.Errorf("panel %q: groups by %q, not a label of %v", p.Title, l, names)
					}
				}
			}
		}
	}
	if seen == 0 || len(reg.labels) == 0 {
		t.Fatalf("checked %d metric references against %d registered metrics", seen, len(reg.labels))
	}
	for _, must := range []string{"dataplane_gossip_apply_lag_seconds", "dataplane_cache_stale_hits_total", "dataplane_cache_origin_reads_total", "dataplane_gossip_members"} {
		if !strings.Contains(string(b), must) {
			t.Errorf("dashboard lacks %s", must)
		}
	}
}
