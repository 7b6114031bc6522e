package bench

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

// testConfig is smaller than the quick preset, so the whole run stays well
// under a minute even with -race on a shared 2-core machine.
func testConfig() Config {
	c := QuickConfig()
	c.Keys, c.ReadRate, c.WriteRate = 100, 150, 4
	c.TTL, c.LogInterval = time.Second, time.Second
	c.Warmup, c.Steady, c.Fault, c.Recover, c.Settle = 500*time.Millisecond, 3*time.Second, time.Second, 500*time.Millisecond, time.Second
	return c
}

func TestRunProperties(t *testing.T) {
	cfg := testConfig()
	if ids := os.Getenv("BENCH_OPTIONS"); ids != "" {
		var err error
		if cfg.Options, err = SelectOptions(splitComma(ids)); err != nil {
			t.Fatal(err)
		}
	}
	b, err := StartBackends(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for k, why := range b.Missing {
		t.Fatalf("%s origin server could not start: %s", k, why)
	}
	rep, err := Run(context.Background(), cfg, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", md.String())
	for _, r := range rep.Results {
		t.Logf("%s: %.1fs, convergence %+v", r.Option.ID, r.Duration, r.Converge)
	}
}
