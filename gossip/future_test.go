package gossip

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/record"
)

// TestFutureVersionRefused is issue 12's forged datagram: a change whose
// version is far ahead of the receivers' clocks (near MaxUint64, or an hour
// ahead) is refused by every node, on every path, and counted; later
// legitimate publishes of the key still reach every node.
func TestFutureVersionRefused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{n: 3})
	c.waitMembers(3, 20*time.Second)
	for name, v := range map[string]record.Version{
		"near MaxUint64": record.Version(math.MaxUint64 >> 1),
		"an hour ahead":  record.MakeVersion(time.Now().Add(time.Hour), 0),
	} {
		forged := encodeChange(change{
			rec:    record.Record{Namespace: "routes", Key: "victim.example.com", Value: []byte(`{"upstreams":["http://evil.example"]}`), Version: v},
			inline: true,
			path:   pathPush,
		})
		for _, n := range c.nodes {
			to := memberlist.Address{Addr: n.Addr(), Name: n.Name()}
			if err := c.nodes[0].ml.Load().SendToAddress(to, forged); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		// Straight into the local path and the log path too.
		c.nodes[1].receive(change{rec: record.Record{Namespace: "routes", Key: "victim.example.com", Version: v, Tombstone: true}, inline: true, path: pathLog})
	}
	eventually(t, 5*time.Second, func() bool {
		dropped := 0.0
		for _, n := range c.nodes {
			dropped += testutil.ToFloat64(n.m.dropped.WithLabelValues("future"))
		}
		return dropped >= 7 // 2 forgeries x 3 nodes (one sent to itself) + the log one
	}, "every node to refuse the forged changes")
	for i, a := range c.appliers {
		if v := a.version("routes", "victim.example.com"); v != 0 {
			t.Fatalf("node %d applied a forged version %s", i, v)
		}
	}
	rec := c.publish(2, "routes", "victim.example.com", []byte(`{"upstreams":["http://good.example"]}`))
	eventually(t, 10*time.Second, func() bool { return c.has("routes", "victim.example.com", rec.Version) },
		fmt.Sprintf("every node to take the legitimate version %s", rec.Version))
}
