package fleetsim

import (
	"context"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"
)

// TestFalseSuspicionsExcludeCuts: a suspicion counts as false only of a
// member that is up and reachable from the node that logged it: not across
// a cut, nor within suspectGrace of the cut healing (its probe went out
// during the cut), nor of a member that is down.
func TestFalseSuspicionsExcludeCuts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(DefaultConfig(20, 1)) // member i is in region i mod 10
		for i := range f.Size() {
			f.obs.setUp(i, true)
		}
		const prober, far, near = 0, 1, 10 // r00, r01, r00
		suspect := func(i int) {
			name, _, _ := f.Member(i)
			r := slog.NewRecord(time.Now(), slog.LevelInfo, "Suspect "+name+" has failed, no acks received", 0)
			if err := f.obs.handler(prober).Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		check := func(step string, wantAll, wantFalse int) {
			t.Helper()
			if m := f.Membership(); m.Suspicions != wantAll || m.FalseSuspicions != wantFalse {
				t.Errorf("%s: %d suspicions (%d false), want %d (%d)", step, m.Suspicions, m.FalseSuspicions, wantAll, wantFalse)
			}
		}
		f.Net.Cut("r00", "r01")
		suspect(far)
		check("across a cut", 1, 0)
		suspect(near)
		check("same side of a cut", 2, 1)
		f.Heal("r00", "r01")
		time.Sleep(suspectGrace / 2)
		suspect(far)
		check("just after the heal", 3, 1)
		time.Sleep(suspectGrace)
		suspect(far)
		check("after the heal", 4, 2)
		f.obs.setUp(far, false)
		suspect(far)
		check("member down", 5, 2)
	})
}
