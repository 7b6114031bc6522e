package fleetsim

import (
	"flag"
	"testing"
	"testing/synctest"
	"time"
)

var (
	cpNamespaces = flag.Int("fleet.cp.namespaces", 2, "namespaces TestFleetCheckpointCost pushes a checkpoint of every second")
	cpSeconds    = flag.Int("fleet.cp.seconds", 5, "seconds of virtual time TestFleetCheckpointCost pushes checkpoints for")
)

// TestFleetCheckpointCost pushes one signed checkpoint per namespace per
// second from one node of a fleet (default 100 nodes in 10 regions, the
// fleet of TestFleet) and checks that every other node's gossip hands
// every checkpoint to its node; it logs what that costs per node per
// second beyond idle traffic. BENCHMARKS.md's figures:
//
//	go test ./gossip/fleetsim -run TestFleetCheckpointCost -v -timeout 60m \
//	    -fleet.size=1000 -fleet.cp.seconds=20 -fleet.idle=30s
func TestFleetCheckpointCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(DefaultConfig(*fleetSize, *fleetSeed))
		took, err := f.Start(10 * time.Minute)
		if err != nil {
			f.Close()
			time.Sleep(time.Minute)
			t.Fatal(err)
		}
		t.Logf("%d nodes: full membership after %s virtual", f.Size(), took.Round(time.Millisecond))
		r := DefaultRunner(f)
		idle := r.Idle(*fleetIdle)
		t.Logf("%s\n%s", Header, idle.Row())
		c, err := r.Checkpoints(*cpNamespaces, *cpSeconds, 5*time.Second)
		f.Close()
		time.Sleep(time.Minute) // in-flight probes outlive Shutdown
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("checkpoint cost beyond idle, per node per second:\n%s\n%s", CheckpointHeader, c.Row())
		if c.Missing != 0 {
			t.Errorf("%d (node, checkpoint) pairs never delivered of %d pushed to %d nodes", c.Missing, c.Pushed, c.Nodes-1)
		}
		if c.Received == 0 {
			t.Error("no checkpoint received")
		}
	})
}
