package devcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/sentinel"
)

func get(t *testing.T, url, host, key string) (int, string) {
	t.Helper()
	return testkit.Get(t, url+"/hello", host, testkit.Bearer(key))
}

// TestDevCluster runs what `dataplane dev` runs and follows its guide: the
// example requests answer as printed, and a route change published through
// the publisher API reaches all three sentinels (one of them reading
// through the cache node).
func TestDevCluster(t *testing.T) {
	c, err := devcluster.Start(context.Background(), devcluster.Config{DataDir: t.TempDir(), AnyPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var guide bytes.Buffer
	c.PrintGuide(&guide)
	wantGuide := []string{"curl -H 'Host: api.localhost'", devcluster.GoodKey, "Ctrl-C", "export DP_SENTINEL=http://" + c.Sentinels[0].Addr()}
	for i, n := range c.Nodes {
		wantGuide = append(wantGuide, fmt.Sprintf("sentinel-%d=%s", i+1, n.GossipAddr()))
	}
	if len(c.GossipAddrs()) != 4 {
		t.Fatalf("GossipAddrs = %v, want the three sentinels and the cache node", c.GossipAddrs())
	}
	for _, want := range wantGuide {
		if !strings.Contains(guide.String(), want) {
			t.Fatalf("guide lacks %q:\n%s", want, guide.String())
		}
	}

	for i, s := range c.Sentinels {
		url := "http://" + s.Addr()
		for _, tc := range []struct {
			host, key string
			status    int
			body      string
		}{
			{devcluster.APIHost, devcluster.GoodKey, 200, "upstream A"},
			{devcluster.APIHost, "wrong", 401, "unknown API key"},
			{devcluster.APIHost, devcluster.DisabledKey, 403, "disabled"},
			{devcluster.APIHost, "", 401, "missing API key"},
			{devcluster.OpenHost, "", 200, "upstream A"},
			{"nope.localhost", "", 404, "no route"},
		} {
			status, body := get(t, url, tc.host, tc.key)
			if status != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("sentinel-%d %s key %q: %d %q, want %d %q", i+1, tc.host, tc.key, status, body, tc.status, tc.body)
			}
		}
	}

	route, _ := json.Marshal(sentinel.Route{Upstreams: []string{c.Upstreams[1]}, RequireKey: true, Keyspace: devcluster.Keyspace})
	req, _ := http.NewRequest("PUT", c.PublishURL+"/v1/records/routes/"+devcluster.APIHost, bytes.NewReader(route))
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish route change: %d", resp.StatusCode)
	}
	published := time.Now()
	for i, s := range c.Sentinels {
		var body string
		if !testkit.Poll(5*time.Second, func() bool {
			_, body = get(t, "http://"+s.Addr(), devcluster.APIHost, devcluster.GoodKey)
			return strings.Contains(body, "upstream B")
		}) {
			t.Fatalf("sentinel-%d still serves %q after the route change", i+1, body)
		}
		t.Logf("sentinel-%d serves the new route %v after publish", i+1, time.Since(published).Round(time.Millisecond))
	}
	admin := c.Sentinels[0].AdminAddr()
	req, _ = http.NewRequest("GET", fmt.Sprintf("http://%s/debug/records/routes/%s", admin, devcluster.APIHost), nil)
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"version"`) {
		t.Fatalf("debug endpoint: %d %s", resp.StatusCode, b)
	}
	c.Close()
	c.Close() // and the deferred one: closing again is harmless
}

// freePorts returns n distinct ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// sentinelBase returns a port p with p..p+2 and their admin ports
// p+1000..p+1002 free a moment ago.
func sentinelBase(t *testing.T) int {
	t.Helper()
	for _, p := range freePorts(t, 20) {
		if p > 64000 {
			continue
		}
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 1000, p + 1001, p + 1002} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free run of sentinel ports")
	return 0
}

// TestStartPortTaken starts a cluster with one of its ports taken: Start
// returns a *ListenError naming the port's Config field and a nil cluster
// (no panic), and every other port is free again afterwards.
func TestStartPortTaken(t *testing.T) {
	for _, tc := range []struct {
		field string
		taken func(cfg devcluster.Config) int
	}{
		{"UpstreamPorts", func(cfg devcluster.Config) int { return cfg.UpstreamPorts[1] }},
		{"CacheNodePort", func(cfg devcluster.Config) int { return cfg.CacheNodePort }},
		{"PublisherPort", func(cfg devcluster.Config) int { return cfg.PublisherPort }},
		{"SentinelPorts", func(cfg devcluster.Config) int { return cfg.SentinelPorts[2] }},
		{"SentinelPorts", func(cfg devcluster.Config) int { return cfg.SentinelPorts[1] + 1000 }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			p := freePorts(t, 4)
			b := sentinelBase(t)
			cfg := devcluster.Config{
				DataDir:       t.TempDir(),
				UpstreamPorts: [2]int{p[0], p[1]},
				CacheNodePort: p[2],
				PublisherPort: p[3],
				SentinelPorts: [3]int{b, b + 1, b + 2},
			}
			taken := tc.taken(cfg)
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", taken))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()

			c, err := devcluster.Start(context.Background(), cfg)
			var le *devcluster.ListenError
			if c != nil || !errors.As(err, &le) || le.Field != tc.field || !strings.Contains(err.Error(), fmt.Sprint(taken)) {
				t.Fatalf("Start with port %d taken: cluster %v, err %v; want nil and a ListenError for %s", taken, c, err, tc.field)
			}
			all := []int{p[0], p[1], p[2], p[3], b, b + 1, b + 2, b + 1000, b + 1001, b + 1002}
			for _, q := range all {
				if q == taken {
					continue
				}
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
				if err != nil {
					t.Fatalf("port %d still bound after the failed Start: %v", q, err)
				}
				l.Close()
			}
		})
	}
}
