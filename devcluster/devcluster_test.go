package devcluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/sentinel"
)

func get(t *testing.T, url, host, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/hello", nil)
	req.Host = host
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
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
	for _, want := range []string{"curl -H 'Host: api.localhost'", devcluster.GoodKey, "Ctrl-C"} {
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
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, body := get(t, "http://"+s.Addr(), devcluster.APIHost, devcluster.GoodKey)
			if strings.Contains(body, "upstream B") {
				t.Logf("sentinel-%d serves the new route %v after publish", i+1, time.Since(published).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sentinel-%d still serves %q 5s after the route change", i+1, body)
			}
			time.Sleep(5 * time.Millisecond)
		}
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
