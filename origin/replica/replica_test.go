package replica_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/replica"
	"github.com/dataplane/dataplane/record"
)

func open(t *testing.T) *dir.Store {
	s, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReplicatorLagAndLoss: a change reaches the replica (record, then log
// entry) no sooner than Lag after it appears in the primary, lost copies are
// retried, and the replica never goes back to an older version.
func TestReplicatorLagAndLoss(t *testing.T) {
	cases := []struct {
		name string
		lag  time.Duration
		loss float64
	}{
		{"no lag", 0, 0},
		{"lag", 300 * time.Millisecond, 0},
		{"lag and loss", 300 * time.Millisecond, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			primary, rep := open(t), open(t)
			cfg := replica.DefaultConfig()
			cfg.Lag, cfg.Loss, cfg.Interval, cfg.Seed = tc.lag, tc.loss, 10*time.Millisecond, 1
			r, err := replica.New(primary, rep, cfg)
			if err != nil {
				t.Fatal(err)
			}
			clock := record.NewClock(nil)
			for i := 0; i < 20; i++ {
				rec := record.Record{Namespace: "routes", Key: fmt.Sprint("k", i%5), Value: []byte(fmt.Sprint(i)), Version: clock.Now()}
				if _, err := origin.Publish(ctx, primary, rec); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			if _, err := r.Pass(ctx); err != nil {
				t.Fatal(err)
			}
			if tc.lag > 0 {
				if _, err := rep.Get(ctx, "routes", "k0", 0); !errors.Is(err, origin.ErrNotFound) {
					t.Fatalf("replica answered %v before the lag passed", err)
				}
			}
			for {
				if _, err := r.Pass(ctx); err != nil {
					t.Fatal(err)
				}
				cs, err := rep.ReadLog(ctx, 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(cs) == 20 {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("replica log has %d of 20 entries", len(cs))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if took := time.Since(start); took < tc.lag {
				t.Fatalf("replicated in %s, under the lag %s", took, tc.lag)
			}
			for i := 0; i < 5; i++ {
				p, _ := primary.Get(ctx, "routes", fmt.Sprint("k", i), 0)
				got, err := rep.Get(ctx, "routes", fmt.Sprint("k", i), 0)
				if err != nil || got.Version != p.Version || string(got.Value) != string(p.Value) {
					t.Fatalf("replica k%d = %+v, %v; primary %+v", i, got, err, p)
				}
			}
			copied, lost := r.Counts()
			if copied != 20 || (tc.loss > 0) != (lost > 0) {
				t.Fatalf("copied %d lost %d; want 20 copied and losses only with loss", copied, lost)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []replica.Config{
		{Lag: -1, Interval: time.Millisecond},
		{Loss: 1, Interval: time.Millisecond},
		{Loss: -0.1, Interval: time.Millisecond},
		{},
	} {
		if _, err := replica.New(open(t), open(t), c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}
