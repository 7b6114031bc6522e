package devcluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	dataplane "github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/testscale"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// errOriginDown is what a downed origin answers.
var errOriginDown = errors.New("test: origin down")

// downable is an origin whose reads fail while down is set: the node
// reading it cannot read the change log, snapshots or records.
type downable struct {
	origin.Store
	down atomic.Bool
}

func (d *downable) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if d.down.Load() {
		return record.Record{}, errOriginDown
	}
	return d.Store.Get(ctx, ns, key, ifNewer)
}

func (d *downable) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if d.down.Load() {
		return nil, errOriginDown
	}
	return d.Store.ReadLog(ctx, after, limit)
}

func (d *downable) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if d.down.Load() {
		return record.Snapshot{}, errOriginDown
	}
	return d.Store.GetSnapshot(ctx, ns)
}

// prometheusBin is the Prometheus server: $DATAPLANE_PROMETHEUS or
// /usr/bin/prometheus (Debian's package; scripts/test.sh installs it).
func prometheusBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("DATAPLANE_PROMETHEUS")
	if bin == "" {
		bin = "/usr/bin/prometheus"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no Prometheus server (scripts/test.sh installs Debian's prometheus package; or set DATAPLANE_PROMETHEUS): %v", err)
	}
	return bin
}

// testRules returns deploy/prometheus/rules.yaml made quick: every for: is
// 1s and DataplaneBehindLog's bound is behind seconds. It fails if the file
// no longer has what it rewrites.
func testRules(t *testing.T, behind time.Duration) string {
	t.Helper()
	b, err := os.ReadFile("../deploy/prometheus/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rules := string(b)
	forRE := regexp.MustCompile(`(?m)^(\s+for: )\S+$`)
	if len(forRE.FindAllString(rules, -1)) < 6 {
		t.Fatal("rules.yaml: want a for: on each of at least 6 alerts")
	}
	rules = forRE.ReplaceAllString(rules, "${1}1s")
	const heard = "dataplane_node_heard_age_seconds > 120"
	if !strings.Contains(rules, heard) {
		t.Fatalf("rules.yaml lacks %q (DataplaneBehindLog): update this test with the rule", heard)
	}
	return strings.Replace(rules, heard, fmt.Sprintf("dataplane_node_heard_age_seconds > %g", behind.Seconds()), 1)
}

// promServer is a Prometheus server run by a test.
type promServer struct {
	url string
	cmd *exec.Cmd
	out *strings.Builder
}

// startPrometheus runs Prometheus on a free loopback port with config and
// rules in a temporary directory, scraping each job's targets every second
// and evaluating the rules every second.
func startPrometheus(t *testing.T, jobs map[string][]string, rules string) *promServer {
	t.Helper()
	bin := prometheusBin(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
`, filepath.Join(dir, "rules.yaml"))
	for _, job := range slices.Sorted(maps.Keys(jobs)) {
		quoted := make([]string, len(jobs[job]))
		for i, a := range jobs[job] {
			quoted[i] = fmt.Sprintf("%q", a)
		}
		cfg += fmt.Sprintf("  - job_name: %s\n    static_configs:\n      - targets: [%s]\n", job, strings.Join(quoted, ", "))
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port can be taken between finding and binding it: try again.
attempts:
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		out := &strings.Builder{}
		cmd := exec.Command(bin,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+addr,
			"--web.console.templates="+dir, "--web.console.libraries="+dir,
		)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		p := &promServer{url: "http://" + addr, cmd: cmd, out: out}
		deadline := time.Now().Add(testscale.Duration(20 * time.Second))
		for {
			select {
			case err := <-exited:
				if attempt < 3 && strings.Contains(out.String(), "address already in use") {
					continue attempts
				}
				t.Fatalf("prometheus exited: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if resp, err := http.Get(p.url + "/-/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Cleanup(func() {
						_ = cmd.Process.Signal(syscall.SIGTERM)
						select {
						case <-exited:
						case <-time.After(testscale.Duration(10 * time.Second)):
							_ = cmd.Process.Kill()
							<-exited
						}
					})
					return p
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("prometheus not ready at %s:\n%s", p.url, out.String())
			}
		}
	}
}

// get decodes the data of a Prometheus API answer.
func (p *promServer) get(t *testing.T, path string, data any) {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		t.Fatalf("GET %s: status %q: %v", path, body.Status, err)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

type alert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p *promServer) alerts(t *testing.T) []alert {
	t.Helper()
	var d struct {
		Alerts []alert `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", &d)
	return d.Alerts
}

// lastEvaluation returns the rule group's last evaluation time, failing on a
// rule Prometheus could not evaluate.
func (p *promServer) lastEvaluation(t *testing.T) time.Time {
	t.Helper()
	var d struct {
		Groups []struct {
			Name           string    `json:"name"`
			LastEvaluation time.Time `json:"lastEvaluation"`
			Rules          []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	p.get(t, "/api/v1/rules", &d)
	if len(d.Groups) != 1 || len(d.Groups[0].Rules) < 6 {
		t.Fatalf("want one rule group of at least 6 rules, got %+v", d.Groups)
	}
	for _, r := range d.Groups[0].Rules {
		if r.Health == "err" {
			t.Fatalf("rule %s: %s", r.Name, r.LastError)
		}
	}
	return d.Groups[0].LastEvaluation
}

// TestAlertsFire runs a real Prometheus with deploy/prometheus/rules.yaml
// (for: made 1s) scraping the dev cluster's three sentinels and its
// publisher's server, and a second publisher's metrics: while the cluster
// is healthy no alert is pending or firing; then sentinel-2's origin goes
// down (it falls behind the log, and keys, failing closed after a few
// seconds, answer 503), an unsigned change is written to the origin's log
// (the sentinels refuse it), a write waits for a receipt that a member which
// died without leaving cannot give, and the second publisher, whose origin
// tells a time an hour ahead, refuses a write; DataplaneBehindLog,
// DataplaneNamespaceFailingClosed, DataplaneChangesRefused,
// DataplaneReceiptIncomplete and DataplanePublisherClockRefused fire for
// the instances concerned. A renamed metric leaves its alert silent and
// fails here. (DataplaneCacheNearBound is tested by promtool only: a dev
// cluster does not fill its cache.)
func TestAlertsFire(t *testing.T) {
	start := time.Now()
	failClosed := testscale.Duration(5 * time.Second)
	behind := testscale.Duration(4 * time.Second)
	origins := map[string]*downable{}
	c, err := devcluster.Start(context.Background(), devcluster.Config{
		DataDir:   t.TempDir(),
		AnyPorts:  true,
		Staleness: map[string]dataplane.Policy{sentinel.KeysNamespace: {FailClosedAfter: failClosed}},
		// Checkpoints renewed within D: a quiet namespace stays proven.
		Timing: func() origin.Timing {
			tm := origin.LocalTiming()
			tm.CheckpointLifetime = failClosed
			return tm
		}(),
		// Checkpoints pushed by gossip would keep sentinel-2 proven
		// current while cut from the origin (rightly: gossip still
		// reaches it). Without the push, the dev sentinels, which read
		// through the cache tier (it serves no checkpoints), verify none
		// and keep the older proofs: log reads, which the cut stops.
		CheckpointsFromOriginOnly: true,
		WrapOrigin: func(name string, s origin.Store) origin.Store {
			d := &downable{Store: s}
			origins[name] = d
			return d
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	instances := make([]string, len(c.Sentinels))
	for i, s := range c.Sentinels {
		instances[i] = s.AdminAddr()
	}
	// The dev publisher's server serves its metrics like publish serve's.
	pubAddr := strings.TrimPrefix(c.PublishURL, "http://")
	// A second publisher whose origin tells a time an hour ahead: it
	// refuses every write (publisher.ErrClockOffset), counted in its own
	// registry, which Prometheus scrapes too.
	skewReg := prometheus.NewRegistry()
	skewCfg := publisher.DefaultConfig()
	skewCfg.Registerer = skewReg
	skewed, err := publisher.New(aheadClock{c.Store}, skewCfg)
	if err != nil {
		t.Fatal(err)
	}
	skewSrv := httptest.NewServer(promhttp.HandlerFor(skewReg, promhttp.HandlerOpts{}))
	defer skewSrv.Close()
	skewAddr := strings.TrimPrefix(skewSrv.URL, "http://")
	jobs := map[string][]string{"sentinel": instances, "publisher": {pubAddr}, "skewed-publisher": {skewAddr}}
	p := startPrometheus(t, jobs, testRules(t, behind))

	// Healthy: every target up, then several evaluations with no alert.
	deadline := time.Now().Add(testscale.Duration(30 * time.Second))
	for {
		var d struct {
			ActiveTargets []struct {
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		}
		p.get(t, "/api/v1/targets", &d)
		up := 0
		for _, tg := range d.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		if up == len(instances)+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not all up: %+v", d.ActiveTargets)
		}
		time.Sleep(100 * time.Millisecond)
	}
	upAt := time.Now()
	t.Logf("targets up after %v (scale %.1f)", time.Since(start).Round(time.Millisecond), testscale.Factor())
	var last time.Time
	for evals := 0; evals < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("rules evaluated %d times in the healthy phase, want 4", evals)
		}
		if ev := p.lastEvaluation(t); ev.After(upAt) && ev.After(last) {
			evals++
			last = ev
			if a := p.alerts(t); len(a) != 0 {
				t.Fatalf("alerts on the healthy cluster: %+v", a)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Logf("healthy for 4 evaluations after %v", time.Since(start).Round(time.Millisecond))

	// Provoke: sentinel-2 loses its origin; an unsigned change enters the log.
	origins["sentinel-2"].down.Store(true)
	forger, err := publisher.New(c.Store, publisher.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	route, _ := json.Marshal(sentinel.Route{DeploymentID: "dep_forged", Upstreams: []string{c.Upstreams[1]}})
	if _, err := forger.Put(context.Background(), sentinel.RoutesNamespace, "forged.localhost", route); err != nil {
		t.Fatal(err)
	}
	// A write whose receipt cannot be met: a member joins the cluster and
	// dies without leaving, so it stays counted and never applies.
	gone := joinMember(t, c)
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", c.PublishURL+"/v1/records/"+sentinel.RoutesNamespace+"/receipt.localhost?wait=1s", strings.NewReader(string(route)))
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PUT ?wait=1s with a member gone: %d %s, want 202 (receipt incomplete)", resp.StatusCode, body)
	}
	// A write refused for the publisher's clock.
	if _, err := skewed.Put(context.Background(), sentinel.RoutesNamespace, "skewed.localhost", route); !errors.Is(err, publisher.ErrClockOffset) {
		t.Fatalf("skewed publisher's Put: %v, want ErrClockOffset", err)
	}

	want := map[string]func(alert) bool{
		"DataplaneBehindLog": func(a alert) bool {
			return a.Labels["instance"] == instances[1] && a.Labels["namespace"] == sentinel.KeysNamespace
		},
		"DataplaneNamespaceFailingClosed": func(a alert) bool {
			return a.Labels["instance"] == instances[1] && a.Labels["namespace"] == sentinel.KeysNamespace
		},
		"DataplaneChangesRefused":        func(a alert) bool { return a.Labels["instance"] == instances[0] },
		"DataplaneReceiptIncomplete":     func(a alert) bool { return a.Labels["instance"] == pubAddr },
		"DataplanePublisherClockRefused": func(a alert) bool { return a.Labels["instance"] == skewAddr },
	}
	t.Logf("provoked after %v", time.Since(start).Round(time.Millisecond))
	deadline = time.Now().Add(testscale.Duration(60 * time.Second))
	var got []alert
	firing := map[string]bool{}
	for {
		// Reads of keys on sentinel-2: refused (503) once it fails closed.
		code, _ := get(t, "http://"+c.Sentinels[1].Addr(), devcluster.APIHost, devcluster.GoodKey)
		got = p.alerts(t)
		missing := []string{}
		for name, match := range want {
			if !slices.ContainsFunc(got, func(a alert) bool {
				return a.Labels["alertname"] == name && a.State == "firing" && match(a)
			}) {
				missing = append(missing, name)
			}
		}
		for name := range want {
			if !firing[name] && !slices.Contains(missing, name) {
				firing[name] = true
				t.Logf("%s firing after %v", name, time.Since(start).Round(time.Millisecond))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not firing: %v (last sentinel-2 keys answer %d); alerts: %+v\nprometheus:\n%s", missing, code, got, p.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("all fired after %v", time.Since(start).Round(time.Millisecond))
	for _, a := range got {
		if a.Labels["severity"] == "" {
			t.Errorf("alert %s has no severity", a.Labels["alertname"])
		}
	}
}

// aheadClock is an origin whose time (origin.Clock) is an hour ahead of
// this host's, so a publisher writing to it refuses every write.
type aheadClock struct{ origin.Store }

func (aheadClock) ServerTime(context.Context) (time.Time, error) {
	return time.Now().Add(time.Hour).Truncate(time.Second), nil
}

// joinMember joins a bare gossip member (no cache: it applies nothing) to
// the dev cluster, in its region, and waits until sentinel-1, which the
// publisher publishes through, counts it.
func joinMember(t *testing.T, c *devcluster.Cluster) *gossip.Node {
	t.Helper()
	g := gossip.DefaultLocalConfig()
	g.Insecure, g.Name, g.Region, g.Seeds = true, "member-gone", "dev", []string{c.Nodes[0].GossipAddr()}
	n, err := gossip.New(g, gossip.Funcs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	testkit.Eventually(t, 30*time.Second, "sentinel-1 to count the new member", func() bool {
		return slices.ContainsFunc(c.Nodes[0].Members(), func(m gossip.Member) bool { return m.Name == g.Name })
	})
	return n
}
