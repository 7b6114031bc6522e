package pgsync_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/pgsync"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// The crash helper: when PGSYNC_CRASH_DSN is set, the test binary becomes a
// syncer publishing that database's outbox into the directory origin at
// PGSYNC_CRASH_ROOT, until it is killed.
const (
	helperEnv = "PGSYNC_CRASH_DSN"
	rootEnv   = "PGSYNC_CRASH_ROOT"
)

func crashHelper() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	ds, err := dir.Open(os.Getenv(rootEnv))
	if err != nil {
		return fail(err)
	}
	store := slowStore{ds}
	clock := record.NewClock(nil)
	quiet := slog.New(slog.DiscardHandler)
	pcfg := publisher.DefaultConfig()
	pcfg.Clock, pcfg.Logger = clock, quiet
	pcfg.Schemas = schema.NewRegistry() // rows carry arbitrary values
	pub, err := publisher.New(store, pcfg)
	if err != nil {
		return fail(err)
	}
	cfg := pgsync.DefaultConfig()
	cfg.DSN = os.Getenv(helperEnv)
	cfg.Publisher, cfg.Clock, cfg.Logger = pub, clock, quiet
	cfg.Schemas = schema.NewRegistry()
	cfg.BatchSize = 8
	cfg.PollInterval = 200 * time.Millisecond
	cfg.StandbyInterval = 10 * time.Millisecond
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	s, err := pgsync.New(cfg)
	if err != nil {
		return fail(err)
	}
	_ = s.Run(context.Background()) // until SIGKILL
	return 0
}

// slowStore gives each compare-and-swap a millisecond of latency, as a
// remote origin would have, so the publish is most of a row's time and
// kills tend to strike in the middle of one.
type slowStore struct{ origin.Store }

func (s slowStore) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	time.Sleep(time.Millisecond)
	return s.Store.CompareAndSwap(ctx, rec, prev)
}

// TestCrashRecovery is the exactly-once test. A syncer runs in a child
// process and is killed with SIGKILL at random moments while writers keep
// adding rows, again and again; then one syncer runs to completion. Every
// row must end published exactly once in effect: marked, under a version
// above its key's previous row's, the origin holding each key's last row,
// and the change log holding exactly one entry per row.
func TestCrashRecovery(t *testing.T) {
	pool, dsn := newDB(t)
	root := t.TempDir()
	const ns = "crash"

	count := func(ctx context.Context, cond string) (int, error) {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM dataplane_outbox WHERE `+cond).Scan(&n)
		return n, err
	}
	// Writers: one to three rows per transaction over eight keys, a tenth
	// of them deletes, until the rounds are over; pausing while 40 rows
	// wait, so the syncer always has work in hand when it is killed and
	// the backlog stays small.
	wctx, stopWriting := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for wctx.Err() == nil {
			if n, err := count(wctx, "published_at IS NULL"); err == nil && n >= 40 {
				time.Sleep(5 * time.Millisecond) // pacing, not waiting
				continue
			}
			keys := make([]string, 1+rand.IntN(3))
			for i := range keys {
				keys[i] = fmt.Sprint("k", rand.IntN(8))
				if rand.IntN(10) == 0 {
					keys[i] = "-" + keys[i]
				}
			}
			if _, err := insert(wctx, pool, ns, keys...); err != nil && wctx.Err() == nil {
				t.Errorf("writer: %v", err)
				return
			}
			time.Sleep(time.Duration(1+rand.IntN(6)) * time.Millisecond) // pacing, not waiting
		}
	}()

	published := func() int {
		n, err := count(testCtx(t), "published_at IS NOT NULL")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	store := openDir(t, root)
	midRow := 0 // kills that struck between a row's reservation and its mark
	for round := 0; round < 6 || midRow < 3 && round < 16; round++ {
		before := published()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+dsn, rootEnv+"="+root)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitFor(t, 60*time.Second, fmt.Sprintf("round %d: the child publishing with rows waiting", round), func() bool {
			n, err := count(testCtx(t), "published_at IS NULL")
			return err == nil && n >= 3 && published() >= before+3
		})
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // the kill moment is what varies
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: the child ended with %v before it was killed", round, err)
		}

		// What did the kill interrupt?
		var id, version int64
		var key string
		err = pool.QueryRow(testCtx(t), `SELECT id, key, version FROM dataplane_outbox
			WHERE version IS NOT NULL AND published_at IS NULL ORDER BY id LIMIT 1`).Scan(&id, &key, &version)
		switch {
		case err == nil:
			midRow++
			cur, gerr := store.Get(testCtx(t), ns, key, 0)
			state := "reserved, not yet in the origin"
			if gerr == nil && cur.Version == record.Version(version) {
				state = "in the origin, not yet marked"
			} else if gerr != nil && !errors.Is(gerr, origin.ErrNotFound) {
				t.Fatalf("round %d: origin read after the kill: %v", round, gerr)
			}
			t.Logf("round %d: killed %v after start, %d rows published; row %d %s", round, time.Since(start).Round(time.Millisecond), published()-before, id, state)
		default:
			t.Logf("round %d: killed %v after start, %d rows published; between rows (%v)", round, time.Since(start).Round(time.Millisecond), published()-before, err)
		}
	}
	stopWriting()
	wg.Wait()
	if midRow == 0 {
		t.Fatal("no kill struck in the middle of a row; the test proved nothing")
	}

	// One syncer to completion.
	clock := record.NewClock(nil)
	reg := prometheus.NewRegistry()
	cfg := syncerCfg(newCountingPub(t, openDir(t, root), clock), clock, reg)
	cfg.DSN = dsn
	_, stop := runSyncer(t, cfg)
	waitAllPublished(t, pool, 90*time.Second)
	stop()

	rows := checkOutcome(t, pool, openDir(t, root), ns)
	t.Logf("%d rows, %d kills mid-row; the last syncer republished %v and reassigned %v", len(rows), midRow,
		metricValue(t, reg, "dataplane_pgsync_republished_total"), metricValue(t, reg, "dataplane_pgsync_reassigned_total"))
}
