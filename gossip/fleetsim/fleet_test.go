package fleetsim

import (
	"flag"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var (
	fleetSize      = flag.Int("fleet.size", 100, "nodes in TestFleet's fleet (10 regions)")
	fleetScenarios = flag.String("fleet.scenarios", "steady,loss", "comma-separated scenarios for TestFleet: "+strings.Join(Scenarios, ","))
	fleetSeed      = flag.Uint64("fleet.seed", 1, "seed of TestFleet's network and choices")
	fleetChanges   = flag.Int("fleet.changes", 10, "changes per scenario in TestFleet")
	// The suite's defaults are short (retries end within seconds; the idle
	// rate only corrects the byte counts); BENCHMARKS.md uses 20s and 30s.
	fleetSettle = flag.Duration("fleet.settle", 5*time.Second, "virtual time each scenario runs on after its last change in TestFleet")
	fleetIdle   = flag.Duration("fleet.idle", 10*time.Second, "virtual time the idle scenario measures in TestFleet")
)

// maxMsgsPerChange bounds the change messages (push, relay, gossip copies
// and acks) a node receives per change, averaged over the fleet, with no
// loss and with 10% loss.
const maxMsgsPerChange = 3

// maxDelivery bounds every delivery, publish to a node holding the change,
// with no loss and with 10% loss: push, relay, their retries and relays
// repairing each other deliver; the change log (5 s) must not be needed.
const maxDelivery = time.Second

// TestFleet runs a fleet of real gossip nodes over memberlist in virtual
// time (default: 100 nodes in 10 regions, 20-150 ms between regions), with
// no loss and with 10% loss on every link, and checks that every change
// reaches every node in under a second and what a change costs. A late
// delivery is explained in the log (Report.Diagnosis).
// Larger runs, with the scenarios of BENCHMARKS.md:
//
//	go test ./gossip/fleetsim -run TestFleet -v -timeout 120m \
//	    -fleet.size=1000 -fleet.scenarios=steady,loss,loss30,partition,restart \
//	    -fleet.changes=20 -fleet.settle=20s -fleet.idle=30s
func TestFleet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(DefaultConfig(*fleetSize, *fleetSeed))
		t0 := time.Now()
		took, err := f.Start(10 * time.Minute)
		if err != nil {
			f.Close()
			time.Sleep(time.Minute)
			t.Fatal(err)
		}
		t.Logf("%d nodes: full membership after %s virtual, %s CPU", f.Size(), took.Round(time.Millisecond), CPU().Round(time.Millisecond))
		r := DefaultRunner(f)
		r.Changes = *fleetChanges
		r.Settle, r.IdleFor = *fleetSettle, *fleetIdle
		t.Log(Header)
		r.OnReport = func(rep Report) {
			t.Logf("%s (%s virtual, %s CPU so far)", rep.Row(), time.Since(t0).Round(time.Second), CPU().Round(time.Second))
		}
		reps, err := r.Run(strings.Split(*fleetScenarios, ","))
		f.Close()
		time.Sleep(time.Minute) // in-flight probes outlive Shutdown
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("total %s virtual, %s CPU\n%s", time.Since(t0).Round(time.Second), CPU().Round(time.Second), Header)
		for _, rep := range reps {
			t.Log(rep.Row())
		}
		for _, rep := range reps {
			if d := rep.Diagnosis(); d != "" {
				t.Log(d)
			}
		}
		for _, rep := range reps {
			if rep.Missing > 0 {
				t.Errorf("%s: %d (node, change) pairs never delivered", rep.Scenario, rep.Missing)
			}
			if rep.Scenario != "steady 0% loss" && rep.Scenario != "steady 10% loss" {
				continue
			}
			// Virtual time: these are the protocol's figures, not the
			// machine's, and they hold whatever order membership formed
			// in (memberlist's own randomness is not seeded).
			if rep.MsgsPerChange > maxMsgsPerChange {
				t.Errorf("%s: %.1f messages received per node per change, want at most %d", rep.Scenario, rep.MsgsPerChange, maxMsgsPerChange)
			}
			if rep.Max >= maxDelivery {
				t.Errorf("%s: slowest delivery %s, want under %s (push, relay and retries; see the late deliveries above)", rep.Scenario, rep.Max, maxDelivery)
			}
		}
	})
}
