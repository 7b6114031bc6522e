package dataplane_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
)

// TestOpenRefusesInconsistentTiming: each timing combination that nothing
// checked before issue 22 is refused at Open, with one error naming the
// constants, their values and the rule; the presets open.
func TestOpenRefusesInconsistentTiming(t *testing.T) {
	store, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keysFailAfter := func(d time.Duration) map[string]dataplane.Policy {
		return map[string]dataplane.Policy{"keys": {FailClosedAfter: d}}
	}
	verifier := verifierOf(t, newSigner(t))
	// Open validates before it starts anything: this gossip config is
	// never started.
	gossiping := &gossip.Cluster{}
	cases := []struct {
		name      string
		edit      func(*dataplane.Config)
		want      []string // substrings of the one error; none: Open succeeds
		wantRules int      // rules broken, each on its own line
	}{
		{"default preset", func(*dataplane.Config) {}, nil, 0},
		{"zero timing means the default preset", func(c *dataplane.Config) { c.Timing = origin.Timing{} }, nil, 0},
		{"wan preset", func(c *dataplane.Config) { c.Timing = origin.WANTiming() }, nil, 0},
		{"local preset", func(c *dataplane.Config) { c.Timing = origin.LocalTiming() }, nil, 0},
		{"cache node log tail outside settle (-log-tail-ttl)", func(c *dataplane.Config) { c.Timing.LogTailTTL = time.Second },
			[]string{"LogSettle=2s < PublishBudget=1s + ClockSkew=250ms + ReplicaLag=0s + LogTailTTL=1s", "readers would move their cursor past changes still arriving"}, 1},
		{"snapshots claiming changes still arriving", func(c *dataplane.Config) { c.Timing.SnapshotLag = time.Second },
			[]string{"SnapshotLag=1s < PublishBudget=1s + ClockSkew=250ms", "snapshots would claim changes still arriving"}, 1},
		{"replica lag outside settle", func(c *dataplane.Config) { c.Timing.ReplicaLag = time.Second },
			[]string{"LogSettle=2s < PublishBudget=1s + ClockSkew=250ms + ReplicaLag=1s + LogTailTTL=250ms"}, 1},
		{"local settle with the default publish budget", func(c *dataplane.Config) { c.Timing.LogSettle = 500 * time.Millisecond },
			[]string{"LogSettle=500ms < PublishBudget=1s + ClockSkew=250ms"}, 1},
		{"D within a log read", func(c *dataplane.Config) {
			c.Staleness, c.Gossip, c.Verifier = keysFailAfter(6*time.Second), gossiping, verifier
		},
			[]string{`Staleness["keys"].FailClosedAfter=6s <= LogInterval=5s + LogSettle=2s`, "fail closed with the origin up"}, 2},
		{"D within a quiet namespace's checkpoint renewal", func(c *dataplane.Config) {
			c.Staleness, c.Verifier = keysFailAfter(time.Minute), verifier
		},
			[]string{`Staleness["keys"].FailClosedAfter=1m0s <= CheckpointLifetime/2=2m30s + LogInterval=5s + LogSettle=2s`, "renewed only at half its lifetime"}, 1},
		{"D fits without checkpoints", func(c *dataplane.Config) {
			c.Staleness, c.Verifier, c.Timing.CheckpointLifetime = keysFailAfter(time.Minute), verifier, 0
		}, nil, 0},
		{"D fits without a verifier, checkpoints prove nothing", func(c *dataplane.Config) { c.Staleness = keysFailAfter(time.Minute) }, nil, 0},
		{"D within a log read on a TTL-only node, origin reads prove too", func(c *dataplane.Config) {
			c.Staleness, c.Timing.CheckpointLifetime = keysFailAfter(time.Second), 0
		}, nil, 0},
		{"no log interval", func(c *dataplane.Config) { c.Timing.LogInterval = 0 },
			[]string{"LogInterval=0s must be positive"}, 1},
		{"every rule broken is named in the one error", func(c *dataplane.Config) {
			c.Timing.SnapshotLag, c.Timing.ReplicaLag = time.Second, time.Second
			c.Staleness, c.Verifier = keysFailAfter(time.Minute), verifier
		}, []string{"SnapshotLag=1s", "ReplicaLag=1s", `Staleness["keys"]`}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := dataplane.Config{Origin: store, Timing: origin.DefaultTiming(), Logger: quiet()}
			c.edit(&cfg)
			n, err := dataplane.Open(context.Background(), cfg)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				n.Close()
				return
			}
			if err == nil {
				n.Close()
				t.Fatalf("Open accepted %+v", cfg.Timing)
			}
			if !errors.Is(err, dataplane.ErrConfig) || !errors.Is(err, origin.ErrTiming) {
				t.Errorf("Open error %q wraps neither ErrConfig nor origin.ErrTiming", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open error %q does not say %q", err, w)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != c.wantRules {
				t.Errorf("Open error names %d rules, want %d:\n%v", got, c.wantRules, err)
			}
			if verr := cfg.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Errorf("Config.Validate = %v, want Open's error", verr)
			}
		})
	}
}
