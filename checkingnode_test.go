package dataplane_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// openCheckingNode opens a node on store, alone in its gossip cluster
// (name), that trusts signer and requires checkpoints, with oftenTiming
// and, when failClosed is not 0, keys failing closed after it. The node
// closes at the test's cleanup; reg holds its metrics.
func openCheckingNode(t *testing.T, store origin.Store, signer *sign.Signer, name string, failClosed time.Duration) (n *dataplane.Node, reg *prometheus.Registry) {
	t.Helper()
	reg = prometheus.NewRegistry()
	cfg := dataplane.Config{
		Origin: store, Gossip: soloGossip(name), Timing: oftenTiming(), Verifier: verifierOf(t, signer), RequireCheckpoints: true,
		Logger: quiet(), Registerer: reg,
	}
	if failClosed != 0 {
		cfg.Staleness = map[string]dataplane.Policy{"keys": {FailClosedAfter: failClosed}}
	}
	n, err := dataplane.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, reg
}

// openDir opens another handle on the directory origin at root, as
// another process would.
func openDir(t *testing.T, root string) *dir.Store {
	t.Helper()
	s, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// removeLogEntries removes, as a bucket writer would, the change-log
// entries of version v from the directory origin at root, and returns how
// many it removed.
func removeLogEntries(t *testing.T, root string, v record.Version) int {
	t.Helper()
	logDir := filepath.Join(root, "log")
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), v.String()+"-") {
			if err := os.Remove(filepath.Join(logDir, e.Name())); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	return removed
}
