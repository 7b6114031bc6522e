package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/bench"
	"github.com/dataplane/dataplane/internal/testscale"
)

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help explains every flag and the prices", []string{"bench", "-help"}, 0, "strongly consistent"},
		{"help lists quick", []string{"bench", "-help"}, 0, "$DATAPLANE_QUICK"},
		{"unknown option", []string{"bench", "-options", "5"}, 2, `unknown option "5"`},
		{"bad sizes", []string{"bench", "-value-sizes", "big:1"}, 2, `value size "big:1"`},
		{"bad zipf", []string{"bench", "-quick", "-zipf", "0.5"}, 2, "zipf 0.5"},
		{"bad delays", []string{"bench", "-min-delay", "90ms", "-max-delay", "10ms"}, 2, "delay 90ms-10ms"},
		{"stray argument", []string{"bench", "now"}, 2, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr does not contain %q:\n%s", code, tc.code, tc.stderr, stderr.String())
			}
		})
	}
}

// TestBenchQuick runs `dataplane bench -quick` against real versitygw and
// dynalite servers, with a workload smaller than the preset's so the suite
// stays fast under -race, and checks what must hold whatever the machine's
// speed: no stale read after convergence in any option, every fault
// window serving every read of a cached key, and gossip options reading
// the origin less per write than TTL-only ones. It fails (never skips) if
// a server cannot start.
func TestBenchQuick(t *testing.T) {
	out := t.TempDir()
	// The settle time before the convergence check is the bound an idle
	// machine needs (a log interval, its settle window and a round trip),
	// stretched by the machine's load: the check asserts that every
	// sentinel converged, not how fast a busy machine gets there. The
	// steady phase is stretched alike, so that it holds writes (4 a second
	// on an idle machine; a publish takes far longer on a busy one).
	settle := testscale.Duration(3 * time.Second).String()
	steady := testscale.Duration(2 * time.Second).String()
	args := []string{"bench", "-quick", "-no-progress", "-out", out,
		"-keys", "100", "-read-rate", "150", "-write-rate", "4", "-ttl", "1s", "-log-interval", "1s",
		"-min-delay", "20ms", "-max-delay", "40ms",
		"-warmup", "300ms", "-steady", steady, "-fault", "800ms", "-recover", "200ms", "-settle", settle}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	files := []string{"bench.json"}
	if chartsBuiltIn {
		files = append(files, "propagation-cdf.png", "origin-reads.png")
	} else if !strings.Contains(stderr.String(), "-tags charts") {
		t.Errorf("stderr does not say how to draw the charts:\n%s", stderr.String())
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || len(b) == 0 {
			t.Fatalf("%s not written: %v", f, err)
		}
	}
	rep, err := bench.ReadReport(filepath.Join(out, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 6 {
		t.Fatalf("%d options ran, want the RFC's 6", len(rep.Results))
	}
	gossipMax, ttlMin := 0.0, -1.0
	for _, res := range rep.Results {
		t.Run(res.Option.ID, func(t *testing.T) {
			if res.Skipped != "" || res.Error != "" {
				t.Fatalf("did not complete: skipped %q, error %q", res.Skipped, res.Error)
			}
			if !strings.Contains(stdout.String(), res.Option.Name) {
				t.Errorf("table lacks %q", res.Option.Name)
			}
			if c := res.Converge; c.Stale != 0 || c.Checked == 0 {
				t.Errorf("convergence: %d stale of %d checked: %v", c.Stale, c.Checked, c.Examples)
			}
			for _, f := range bench.FaultPhases {
				st := res.Phase[f]
				if st == nil || st.CachedReads == 0 {
					t.Errorf("%s: no reads of cached keys measured", f)
					continue
				}
				if st.CachedServed != st.CachedReads {
					t.Errorf("%s: served %d of %d reads of cached keys", f, st.CachedServed, st.CachedReads)
				}
			}
			if res.SteadyWrites == 0 {
				t.Errorf("no writes in the steady phase")
			}
		})
		if res.Option.Gossip {
			gossipMax = max(gossipMax, res.ReadsPerWrite)
		} else if ttlMin < 0 || res.ReadsPerWrite < ttlMin {
			ttlMin = res.ReadsPerWrite
		}
	}
	if gossipMax >= ttlMin {
		t.Errorf("gossip options read the origin up to %.1f times per write, TTL-only ones as little as %.1f: want gossip below", gossipMax, ttlMin)
	}
}

// TestBenchReplicaLag runs `dataplane bench -quick` for ours with per-region
// replicas 1 s behind (a fifth of the copies lost and retried) against
// real versitygw, with half the values too large to travel inline: the
// regions after the first read their replica, so a holder there serves
// such a write only once its replica has it, and never serves the older
// replica answer as fresh meanwhile.
func TestBenchReplicaLag(t *testing.T) {
	out := t.TempDir()
	args := []string{"bench", "-quick", "-no-progress", "-out", out, "-options", "ours",
		"-replica-lag", "1s", "-replica-loss", "0.2", "-value-sizes", "200:1,2048:1",
		"-keys", "60", "-read-rate", "150", "-write-rate", "4", "-log-interval", "1s",
		"-min-delay", "20ms", "-max-delay", "40ms",
		"-warmup", "300ms", "-steady", "4s", "-fault", "800ms", "-recover", "200ms", "-settle", "1s"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	rep, err := bench.ReadReport(filepath.Join(out, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("%d options ran, want 1", len(rep.Results))
	}
	res := rep.Results[0]
	if res.Skipped != "" || res.Error != "" {
		t.Fatalf("did not complete: skipped %q, error %q", res.Skipped, res.Error)
	}
	if !strings.Contains(res.Option.Name, "per-region replicas (lag 1s)") || !strings.Contains(stdout.String(), res.Option.Name) {
		t.Errorf("row %q does not say it ran on replicas", res.Option.Name)
	}
	if res.ReplicaCopied == 0 {
		t.Errorf("the replicators copied nothing: the regions did not read replicas")
	}
	if c := res.Converge; c.Stale != 0 || c.Checked == 0 {
		t.Errorf("convergence: %d stale of %d checked: %v", c.Stale, c.Checked, c.Examples)
	}
	if res.FreshBehind != 0 {
		t.Errorf("%d looks found a holder told of a newer version serving an older one as fresh", res.FreshBehind)
	}
	// Some write of a value sent as an invalidation had a holder in a
	// replica region: serving it waited for the replica.
	if res.Served.Max < 1000 {
		t.Errorf("serving max %.0f ms, below the 1 s replica lag: the replica regions did not wait for their replica", res.Served.Max)
	}
	for _, f := range bench.FaultPhases {
		if st := res.Phase[f]; st == nil || st.CachedServed != st.CachedReads {
			t.Errorf("%s: not every read of a cached key was served: %+v", f, st)
		}
	}
}
