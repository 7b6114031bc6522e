package pgsync_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/pgsync"
	"github.com/dataplane/dataplane/record"
)

func TestMigrate(t *testing.T) {
	pool, _ := newDB(t) // migrated once
	ctx := testCtx(t)
	if err := pgsync.Migrate(ctx, pool); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	// Concurrent migrations of a fresh database wait for each other.
	fresh, err := pgxpool.New(ctx, shared.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- pgsync.Migrate(ctx, fresh) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}

	// The dataplane's limits are checked in the writer's transaction.
	bad := []struct {
		name, ns, key string
		value         []byte
		deleted       bool
	}{
		{"bad namespace", "Routes", "k", []byte(`1`), false},
		{"long namespace", strings.Repeat("n", 65), "k", []byte(`1`), false},
		{"empty key", "routes", "", []byte(`1`), false},
		{"long key", "routes", strings.Repeat("é", 129), []byte(`1`), false},
		{"control character", "routes", "a\tb", []byte(`1`), false},
		{"oversized value", "routes", "k", make([]byte, record.MaxValueSize+1), false},
		{"delete with a value", "routes", "k", []byte(`1`), true},
	}
	for _, c := range bad {
		_, err := pool.Exec(ctx, `INSERT INTO dataplane_outbox (namespace, key, value, deleted) VALUES ($1, $2, $3, $4)`, c.ns, c.key, c.value, c.deleted)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("%s: insert error %v, want a check violation", c.name, err)
		}
	}
	// Limits at their edges pass, and writers cannot pre-publish a row.
	var id int64
	var version *int64
	var published bool
	err = pool.QueryRow(ctx, `INSERT INTO dataplane_outbox (namespace, key, value, published_at, version)
		VALUES ($1, $2, $3, now(), 42) RETURNING id, version, published_at IS NOT NULL`,
		strings.Repeat("n", 64), strings.Repeat("k", 256)+"", make([]byte, record.MaxValueSize)).Scan(&id, &version, &published)
	if err != nil {
		t.Fatalf("insert at the limits: %v", err)
	}
	if version != nil || published {
		t.Fatalf("writer-set version %v / published %v survived the insert trigger", version, published)
	}
}

func TestPublishesInOrder(t *testing.T) {
	pool, dsn := newDB(t)
	store := mem.New()
	clock := record.NewClock(nil)
	pub := newCountingPub(t, store, clock)
	var rows []row
	for i := 0; i < 12; i++ { // rows before the syncer starts ...
		rows = append(rows, mustInsert(t, pool, "routes", fmt.Sprint("k", i%4), fmt.Sprint("k", (i+1)%4))...)
	}
	rows = append(rows, mustInsert(t, pool, "routes", "-k1")...)
	cfg := syncerCfg(pub, clock, nil)
	cfg.DSN = dsn
	runSyncer(t, cfg)
	for i := 0; i < 10; i++ { // ... and while it runs
		rows = append(rows, mustInsert(t, pool, "routes", fmt.Sprint("k", i%5))...)
	}
	waitAllPublished(t, pool, 30*time.Second)

	got := checkOutcome(t, pool, store, "routes")
	for i := 1; i < len(got); i++ {
		if *got[i].version <= *got[i-1].version {
			t.Fatalf("row %d got version %x, not above row %d's %x: one syncer follows id order", got[i].id, *got[i].version, got[i-1].id, *got[i-1].version)
		}
	}
	for _, r := range rows {
		if !r.deleted && pub.callsFor(r.key, r.value) != 1 {
			t.Fatalf("row %d published %d times", r.id, pub.callsFor(r.key, r.value))
		}
	}
	if k1, err := store.Get(testCtx(t), "routes", "k1", 0); err != nil || k1.Tombstone {
		t.Fatalf("k1 = %+v, %v: the delete was followed by a put", k1, err)
	}
}

// TestListenDeliversQuickly: with a one-minute poll, a row is still
// published at once: the NOTIFY of its insert wakes the syncer.
func TestListenDeliversQuickly(t *testing.T) {
	pool, _ := newDB(t)
	store := mem.New()
	clock := record.NewClock(nil)
	reg := prometheus.NewRegistry()
	cfg := syncerCfg(newCountingPub(t, store, clock), clock, reg)
	cfg.Pool = pool // the pool path: the syncer takes a connection out of it
	cfg.PollInterval = time.Minute
	s, _ := runSyncer(t, cfg)
	waitFor(t, 10*time.Second, "syncer active", s.Active)

	for i := 0; i < 3; i++ {
		start := time.Now()
		r := mustInsert(t, pool, "routes", "fast.example.com")[0]
		waitFor(t, 10*time.Second, "row published long before the one-minute poll", func() bool {
			got, err := store.Get(testCtx(t), "routes", "fast.example.com", 0)
			return err == nil && string(got.Value) == r.value
		})
		t.Logf("row %d published %v after its commit", r.id, time.Since(start))
	}
	if n := metricValue(t, reg, "dataplane_pgsync_wakeups_total", "cause", "notify"); n < 1 {
		t.Fatalf("wakeups by notify = %v, want at least 1", n)
	}
	if n := metricValue(t, reg, "dataplane_pgsync_wakeups_total", "cause", "poll"); n != 0 {
		t.Fatalf("wakeups by poll = %v, want 0", n)
	}
	if n := metricValue(t, reg, "dataplane_pgsync_active"); n != 1 {
		t.Fatalf("active gauge = %v, want 1", n)
	}
}

// TestTwoSyncers: two syncers on one outbox and one origin while writers
// insert concurrently: every row is published by exactly one of them,
// exactly once, in order per key; when the active one stops, the standby
// takes over.
func TestTwoSyncers(t *testing.T) {
	pool, dsn := newDB(t)
	root := t.TempDir()
	pubA := newCountingPub(t, openDir(t, root), record.NewClock(nil))
	pubB := newCountingPub(t, openDir(t, root), record.NewClock(nil))
	cfgA := syncerCfg(pubA, nil, nil)
	cfgA.DSN = dsn
	cfgB := syncerCfg(pubB, nil, nil)
	cfgB.DSN = dsn
	a, stopA := runSyncer(t, cfgA)
	b, stopB := runSyncer(t, cfgB)

	write := func(n int) []row {
		var mu sync.Mutex
		var all []row
		var wg sync.WaitGroup
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n; i++ {
					rs, err := insert(testCtx(t), pool, "routes", fmt.Sprint("k", (w+i)%6), fmt.Sprint("k", (w*i)%6))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					all = append(all, rs...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return all
	}
	rows := write(25)
	waitAllPublished(t, pool, 60*time.Second)
	if a.Active() == b.Active() {
		t.Fatalf("active: a=%v b=%v; want exactly one", a.Active(), b.Active())
	}

	// Fail over: stop the active syncer, keep writing.
	active, standby := stopA, b
	if b.Active() {
		active, standby = stopB, a
	}
	active()
	rows = append(rows, write(10)...)
	waitAllPublished(t, pool, 60*time.Second)
	if !standby.Active() {
		t.Fatal("the standby did not take over")
	}

	checkOutcome(t, pool, openDir(t, root), "routes")
	for _, r := range rows {
		if n := pubA.callsFor(r.key, r.value) + pubB.callsFor(r.key, r.value); n != 1 {
			t.Fatalf("row %d (%s=%s) published %d times by the two syncers, want once", r.id, r.key, r.value, n)
		}
	}
}

// TestOneKeyCommitsInIDOrder: the insert trigger makes a second writer of a
// key wait for the first to commit before its row is numbered, so a key's
// rows are published in the order their transactions committed.
func TestOneKeyCommitsInIDOrder(t *testing.T) {
	pool, _ := newDB(t)
	ctx := testCtx(t)
	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	var firstID int64
	if err := first.QueryRow(ctx, `INSERT INTO dataplane_outbox (namespace, key, value) VALUES ('routes', 'k', '1') RETURNING id`).Scan(&firstID); err != nil {
		t.Fatal(err)
	}
	secondID := make(chan int64, 1)
	go func() {
		var id int64
		err := pool.QueryRow(ctx, `INSERT INTO dataplane_outbox (namespace, key, value) VALUES ('routes', 'k', '2') RETURNING id`).Scan(&id)
		if err != nil {
			t.Error(err)
		}
		secondID <- id
	}()
	// Another key does not wait.
	if _, err := pool.Exec(ctx, `INSERT INTO dataplane_outbox (namespace, key, value) VALUES ('routes', 'other', '1')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "second writer of k waiting on the key lock", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&n)
		return err == nil && n == 1
	})
	select {
	case id := <-secondID:
		t.Fatalf("second writer numbered (id %d) before the first committed", id)
	default:
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if id := <-secondID; id <= firstID {
		t.Fatalf("second writer got id %d, not above the first's %d", id, firstID)
	}
}

// TestDatabaseRestart: the database goes away mid-run; the syncer logs,
// counts and backs off, and carries on when it is back.
func TestDatabaseRestart(t *testing.T) {
	srv := testserver.StartPostgres(t)
	pool := openDB(t, srv.DSN)
	store := mem.New()
	clock := record.NewClock(nil)
	reg := prometheus.NewRegistry()
	cfg := syncerCfg(newCountingPub(t, store, clock), clock, reg)
	cfg.DSN = srv.DSN
	s, _ := runSyncer(t, cfg)
	for i := 0; i < 10; i++ {
		mustInsert(t, pool, "routes", fmt.Sprint("k", i%3))
	}
	waitAllPublished(t, pool, 30*time.Second)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the syncer to notice the outage", func() bool {
		return !s.Active() && metricValue(t, reg, "dataplane_pgsync_errors_total", "stage", "db") >= 2
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The pool's connections broke with the server: retry the first insert.
	waitFor(t, 30*time.Second, "an insert after the restart", func() bool {
		_, err := insert(testCtx(t), pool, "routes", "k0")
		return err == nil
	})
	for i := 0; i < 10; i++ {
		mustInsert(t, pool, "routes", fmt.Sprint("k", i%3))
	}
	waitAllPublished(t, pool, 30*time.Second)
	waitFor(t, 10*time.Second, "active again", s.Active)
	checkOutcome(t, pool, store, "routes")
}

// TestOriginFailureRetries: an origin that fails now and then delays rows,
// never loses or reorders them.
func TestOriginFailureRetries(t *testing.T) {
	pool, dsn := newDB(t)
	store := mem.New()
	clock := record.NewClock(nil)
	pub := newCountingPub(t, store, clock)
	pub.fail = 3
	reg := prometheus.NewRegistry()
	cfg := syncerCfg(pub, clock, reg)
	cfg.DSN = dsn
	runSyncer(t, cfg)
	for i := 0; i < 20; i++ {
		mustInsert(t, pool, "routes", fmt.Sprint("k", i%4))
	}
	waitAllPublished(t, pool, 30*time.Second)
	checkOutcome(t, pool, store, "routes")
	if n := metricValue(t, reg, "dataplane_pgsync_errors_total", "stage", "origin"); n != 3 {
		t.Fatalf("origin errors = %v, want the 3 injected", n)
	}
}

// TestInvalidRowDoesNotBlock: a row that breaks the limits (possible only
// with the table's checks dropped) is marked with its error and skipped.
func TestInvalidRowDoesNotBlock(t *testing.T) {
	pool, dsn := newDB(t)
	ctx := testCtx(t)
	if _, err := pool.Exec(ctx, `ALTER TABLE dataplane_outbox DROP CONSTRAINT dataplane_outbox_namespace_valid`); err != nil {
		t.Fatal(err)
	}
	mustInsert(t, pool, "Bad Namespace", "k")
	good := mustInsert(t, pool, "routes", "k")[0]
	store := mem.New()
	clock := record.NewClock(nil)
	reg := prometheus.NewRegistry()
	cfg := syncerCfg(newCountingPub(t, store, clock), clock, reg)
	cfg.DSN = dsn
	runSyncer(t, cfg)
	waitAllPublished(t, pool, 30*time.Second)
	rows := readOutbox(t, pool)
	if rows[0].err == nil || !strings.Contains(*rows[0].err, "namespace") || rows[0].version != nil {
		t.Fatalf("bad row: error %v version %v; want rejected with a reason and no version", rows[0].err, rows[0].version)
	}
	if got, err := store.Get(ctx, "routes", "k", 0); err != nil || string(got.Value) != good.value {
		t.Fatalf("the good row after it: %+v, %v", got, err)
	}
	if n := metricValue(t, reg, "dataplane_pgsync_rejected_total"); n != 1 {
		t.Fatalf("rejected_total = %v", n)
	}
}

// TestNewerVersionInOrigin: a version stored by another writer with a clock
// far ahead does not swallow the row: the syncer learns it and publishes
// above it.
func TestNewerVersionInOrigin(t *testing.T) {
	pool, dsn := newDB(t)
	store := mem.New()
	ahead := record.Version(^uint64(0) >> 2)
	if err := store.CompareAndSwap(testCtx(t), record.Record{Namespace: "routes", Key: "k", Value: []byte(`"admin"`), Version: ahead}, 0); err != nil {
		t.Fatal(err)
	}
	r := mustInsert(t, pool, "routes", "k")[0]
	clock := record.NewClock(nil)
	cfg := syncerCfg(newCountingPub(t, store, clock), clock, nil)
	cfg.DSN = dsn
	runSyncer(t, cfg)
	waitAllPublished(t, pool, 30*time.Second)
	got, err := store.Get(testCtx(t), "routes", "k", 0)
	if err != nil || string(got.Value) != r.value || got.Version <= ahead {
		t.Fatalf("origin holds %q@%s, %v; want the row's value above %s", got.Value, got.Version, err, ahead)
	}
}

func TestNewValidates(t *testing.T) {
	pub := newCountingPub(t, mem.New(), nil)
	cases := []struct {
		name string
		edit func(*pgsync.Config)
		want string
	}{
		{"no database", func(c *pgsync.Config) { c.DSN = "" }, "DSN"},
		{"no publisher", func(c *pgsync.Config) { c.Publisher = nil }, "Publisher"},
		{"batch", func(c *pgsync.Config) { c.BatchSize = 0 }, "BatchSize"},
		{"poll", func(c *pgsync.Config) { c.PollInterval = 0 }, "PollInterval"},
		{"standby", func(c *pgsync.Config) { c.StandbyInterval = 0 }, "StandbyInterval"},
		{"backoff", func(c *pgsync.Config) { c.MaxBackoff = c.MinBackoff / 2 }, "MinBackoff"},
		{"row timeout", func(c *pgsync.Config) { c.RowTimeout = 0 }, "RowTimeout"},
	}
	for _, c := range cases {
		cfg := syncerCfg(pub, nil, nil)
		cfg.DSN = "postgres://unused"
		c.edit(&cfg)
		if _, err := pgsync.New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %v, want one naming %s", c.name, err, c.want)
		}
	}
}
