package pgsync_test

import (
	"context"
	"fmt"

	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/pgsync"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// shared is the PostgreSQL server most tests share, each in a database of
// its own; tests that stop the server start their own.
var shared *testserver.PostgresServer

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(crashHelper())
	}
	srv, err := testserver.LaunchPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgsync tests need a real PostgreSQL:", err)
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

// testLogger discards logs unless PGSYNC_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("PGSYNC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newDB returns a pool on a fresh, migrated database of the shared server.
func newDB(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	dsn := shared.NewDatabase(t)
	return openDB(t, dsn), dsn
}

func openDB(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(testCtx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := pgsync.Migrate(testCtx(t), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// seq makes every test value unique, so a publish can be traced to its row.
var seq atomic.Int64

// row is what a test inserted.
type row struct {
	id      int64
	key     string
	value   string // "" for a delete
	deleted bool
}

// insert adds outbox rows in one transaction and returns them with their
// ids. A key prefixed "-" is a delete of that key. Rows are inserted in key
// order, as the package documentation asks of writers (the per-key insert
// lock would otherwise let two multi-key transactions deadlock).
func insert(ctx context.Context, pool *pgxpool.Pool, ns string, keys ...string) ([]row, error) {
	keys = append([]string(nil), keys...)
	sort.SliceStable(keys, func(i, j int) bool { return strings.TrimPrefix(keys[i], "-") < strings.TrimPrefix(keys[j], "-") })
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var out []row
	for _, k := range keys {
		r := row{key: k}
		var value []byte
		if k[0] == '-' {
			r.key, r.deleted = k[1:], true
		} else {
			r.value = fmt.Sprintf(`{"n":%d}`, seq.Add(1))
			value = []byte(r.value)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO dataplane_outbox (namespace, key, value, deleted) VALUES ($1, $2, $3, $4) RETURNING id`,
			ns, r.key, value, r.deleted).Scan(&r.id); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, tx.Commit(ctx)
}

func mustInsert(t *testing.T, pool *pgxpool.Pool, ns string, keys ...string) []row {
	t.Helper()
	rows, err := insert(testCtx(t), pool, ns, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// dbRow is an outbox row as the database holds it.
type dbRow struct {
	id        int64
	key       string
	value     []byte
	deleted   bool
	version   *int64
	published bool
	err       *string
}

func readOutbox(t *testing.T, pool *pgxpool.Pool) []dbRow {
	t.Helper()
	rows, err := pool.Query(testCtx(t), `SELECT id, key, value, deleted, version, published_at IS NOT NULL, error FROM dataplane_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []dbRow
	for rows.Next() {
		var r dbRow
		if err := rows.Scan(&r.id, &r.key, &r.value, &r.deleted, &r.version, &r.published, &r.err); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func unpublished(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM dataplane_outbox WHERE published_at IS NULL`).Scan(&n)
	return n, err
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, what, cond)
}

func waitAllPublished(t *testing.T, pool *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "every outbox row published", func() bool {
		n, err := unpublished(testCtx(t), pool)
		return err == nil && n == 0
	})
}

// countingPub is a real publisher that counts PutVersion calls per value
// (each test value names its row) and can fail calls on demand.
type countingPub struct {
	*publisher.Publisher

	mu    sync.Mutex // guards calls, fail
	calls map[string]int
	fail  int // fail this many PutVersion calls as an unavailable origin
}

func newCountingPub(t *testing.T, store origin.Store, clock *record.Clock) *countingPub {
	t.Helper()
	cfg := publisher.DefaultConfig()
	cfg.Clock = clock
	cfg.Logger = testLogger()
	cfg.Schemas = schema.NewRegistry() // tests write arbitrary values; schema_test.go checks schemas
	p, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &countingPub{Publisher: p, calls: make(map[string]int)}
}

func (c *countingPub) PutVersion(ctx context.Context, rec record.Record) (bool, error) {
	c.mu.Lock()
	if c.fail > 0 {
		c.fail--
		c.mu.Unlock()
		return false, fmt.Errorf("injected failure: %w", origin.ErrUnavailable)
	}
	c.calls[rec.Key+"="+string(rec.Value)]++
	c.mu.Unlock()
	return c.Publisher.PutVersion(ctx, rec)
}

func (c *countingPub) callsFor(key, value string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[key+"="+value]
}

var _ pgsync.Publisher = (*publisher.Publisher)(nil)

// syncerCfg is the test configuration: fast retries, a poll long enough
// that tests notice if they depend on it.
func syncerCfg(pub pgsync.Publisher, clock *record.Clock, reg prometheus.Registerer) pgsync.Config {
	cfg := pgsync.DefaultConfig()
	cfg.Publisher = pub
	cfg.Clock = clock
	cfg.Registerer = reg
	cfg.Logger = testLogger()
	cfg.Schemas = schema.NewRegistry()
	cfg.BatchSize = 16
	cfg.PollInterval = time.Minute
	cfg.StandbyInterval = 20 * time.Millisecond
	cfg.MinBackoff = 10 * time.Millisecond
	cfg.MaxBackoff = 200 * time.Millisecond
	return cfg
}

// runSyncer starts Run in the background; the returned stop cancels it and
// waits for it to return (also done at cleanup).
func runSyncer(t *testing.T, cfg pgsync.Config) (*pgsync.Syncer, func()) {
	t.Helper()
	s, err := pgsync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30 s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func openDir(t *testing.T, root string) *dir.Store {
	t.Helper()
	s, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// checkOutcome verifies what every test expects once the outbox is drained:
// every row published without error; per key, versions strictly increasing
// in id order; the origin holding each key's last row; the change log
// holding exactly one entry per row (its final version) and nothing else of
// ns.
func checkOutcome(t *testing.T, pool *pgxpool.Pool, store origin.Store, ns string) []dbRow {
	t.Helper()
	rows := readOutbox(t, pool)
	last := make(map[string]dbRow)
	want := make(map[record.Change]int64)
	for _, r := range rows {
		if !r.published || r.version == nil || r.err != nil {
			t.Fatalf("row %d: published=%v version=%v error=%v; want published cleanly", r.id, r.published, r.version, r.err)
		}
		if prev, ok := last[r.key]; ok && *r.version <= *prev.version {
			t.Fatalf("key %s: row %d has version %x, not above row %d's %x", r.key, r.id, *r.version, prev.id, *prev.version)
		}
		last[r.key] = r
		want[record.Change{Namespace: ns, Key: r.key, Version: record.Version(*r.version), Tombstone: r.deleted}] = r.id
	}
	for key, r := range last {
		got, err := store.Get(testCtx(t), ns, key, 0)
		if err != nil {
			t.Fatalf("origin %s/%s: %v", ns, key, err)
		}
		if got.Version != record.Version(*r.version) || got.Tombstone != r.deleted || string(got.Value) != string(r.value) {
			t.Fatalf("origin %s/%s = %q@%s tombstone=%v; want row %d: %q@%x tombstone=%v",
				ns, key, got.Value, got.Version, got.Tombstone, r.id, r.value, *r.version, r.deleted)
		}
	}
	log, err := store.ReadLog(testCtx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[record.Change]bool)
	for _, c := range log {
		if c.Namespace != ns {
			continue
		}
		if _, ok := want[c]; !ok {
			t.Fatalf("change log holds %s/%s@%s, which is no row's final version", c.Namespace, c.Key, c.Version)
		}
		seen[c] = true
	}
	var missing []int64
	for c, id := range want {
		if !seen[c] {
			missing = append(missing, id)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	if len(missing) > 0 {
		t.Fatalf("change log lacks the rows %v", missing)
	}
	return rows
}
