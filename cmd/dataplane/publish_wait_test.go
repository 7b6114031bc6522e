package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/testkit"
)

// TestPublishWait runs `publish put -wait` against the dev cluster twice:
// through the publisher API (?wait; the receipt's JSON), and writing the
// origin directly with a short-lived gossip member of its own (-seeds;
// the printed receipt). Both must report every member of region dev.
func TestPublishWait(t *testing.T) {
	dataDir := t.TempDir()
	c, err := devcluster.Start(context.Background(), devcluster.Config{DataDir: dataDir, AnyPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	route := `{"deployment_id":"dep_w","upstreams":["` + c.Upstreams[0] + `"]}`

	var out, errb bytes.Buffer
	args := []string{"publish", "-api", c.PublishURL, "-token", "dev-token", "-wait", "30s", "put", "routes", "w1.localhost", route}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("publish -api -wait: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{`"met":true`, `"region":"dev"`, `"applied":4`, `"total":4`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("publish -api -wait output lacks %s:\n%s", want, out.String())
		}
	}

	// The short-lived member learns the members its seed knows: wait
	// until sentinel-2 knows them all (the cluster has just started).
	if !testkit.Poll(30*time.Second, func() bool { return len(c.Nodes[1].Members()) >= 4 }) {
		t.Fatalf("sentinel-2 sees %v", c.Nodes[1].Members())
	}
	out.Reset()
	errb.Reset()
	// A member that has just joined may not be known yet to the nodes it
	// pushes to, so their acks can miss it: the receipt then completes
	// through their fleet-view reports (one view interval, 10 s in dev),
	// hence the longer wait.
	args = []string{"publish", "-origin", "dir://" + filepath.Join(dataDir, "origin"), "-seeds", c.Nodes[1].GossipAddr(),
		"-insecure", "-gossip-bind", "127.0.0.1:0", "-log-level", "error", "-signing-key", c.SigningKeyFile, "-wait", "60s", "put", "routes", "w2.localhost", route}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("publish -seeds -wait: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"put routes/w2.localhost version", ": met", "dev", "4/4 applied"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("publish -seeds -wait output lacks %q:\n%s\n%s", want, out.String(), errb.String())
		}
	}
}
