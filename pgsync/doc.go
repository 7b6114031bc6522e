// Package pgsync publishes changes from a PostgreSQL primary database into the
// dataplane: the transactional outbox pattern.
//
// # The outbox
//
// Writers record every change of a dataplane key in the table
// dataplane_outbox, in the same transaction as their own data, so the change
// is published if and only if their transaction commits:
//
//	tx, err := pool.Begin(ctx)
//	if err != nil { ... }
//	defer tx.Rollback(ctx)
//	// Change your own data first: its row lock orders concurrent writers.
//	if _, err := tx.Exec(ctx, `UPDATE deployments SET upstream = $1 WHERE host = $2`, upstream, host); err != nil { ... }
//	// Then one outbox row per dataplane key it changes.
//	route, _ := json.Marshal(Route{Deployment: id, Upstreams: []string{upstream}})
//	if _, err := tx.Exec(ctx,
//		`INSERT INTO dataplane_outbox (namespace, key, value) VALUES ($1, $2, $3)`,
//		"routes", host, route); err != nil { ... }
//	// A delete is a row with deleted = true and no value:
//	//   INSERT INTO dataplane_outbox (namespace, key, deleted) VALUES ('routes', $1, true)
//	return tx.Commit(ctx)
//
// In SQL alone:
//
//	BEGIN;
//	UPDATE deployments SET upstream = 'http://10.0.0.7' WHERE host = 'a.example.com';
//	INSERT INTO dataplane_outbox (namespace, key, value)
//	    VALUES ('routes', 'a.example.com', convert_to('{"upstreams":["http://10.0.0.7"]}', 'UTF8'));
//	COMMIT;
//
// Keep synchronous_commit on for these transactions (the default): with it
// off, a database crash can forget a committed row after the sync published
// it. The sync turns it on for its own session whatever the server default.
//
// Migrate creates the table (migrations/001_outbox.sql, embedded):
//
//	dataplane_outbox(id bigserial primary key, namespace text not null,
//	    key text not null, value bytea, deleted boolean not null default false,
//	    created_at timestamptz not null default now(), published_at timestamptz,
//	    version bigint, error text)
//
// with CHECK constraints for the dataplane's limits (namespace [a-z0-9_-]{1,64},
// key 1-256 bytes without control characters, value at most 256 KiB, no value
// on a delete), so a bad row fails the writer's transaction rather than the
// sync; a partial index on the unpublished rows; an AFTER INSERT trigger that
// calls pg_notify('dataplane_outbox', id::text), delivered at commit; and a
// BEFORE INSERT trigger that holds a per-key transaction lock and only then
// numbers the row. That last trigger is what makes id order the commit order
// of each key: with plain bigserial, a transaction could take id 7, another
// id 8 for the same key and commit first, and the sync would publish 8 and
// then 7 over it. Writers of one key therefore wait for each other's commit
// at the outbox insert (they would usually wait on their own rows anyway);
// writers of different keys do not. A transaction that changes several keys
// should insert its rows in (namespace, key) order, as with any locks taken
// row by row: two transactions inserting the same keys in opposite orders
// can deadlock, which PostgreSQL detects and ends by aborting one of them
// (SQLSTATE 40P01; retry it).
//
// # The sync
//
// A Syncer reads unpublished rows in id order and, for each row:
//
//  1. reserves a version in the row, committed before anything else
//     (UPDATE ... SET version = <fresh HLC version> WHERE id = $1 AND version
//     IS NOT DISTINCT FROM <what it read>);
//  2. publishes the record with that version (Publisher.PutVersion: origin
//     compare-and-swap, change log append, gossip notification);
//  3. marks the row done (published_at = now()).
//
// A crash can strike between any two steps; the next attempt finds the row
// with a version but no published_at and asks the origin. If the origin holds
// exactly that version, the publish happened: PutVersion is repeated, which
// writes nothing and only re-appends the change log entry and re-sends the
// notification, either of which the crash may have lost, and the row is
// marked. Otherwise the reserved version never took effect, and the row is
// published anew under a fresh version, so its change log entry is not dated
// in the past, where nodes following the log would not look. Every row thus
// takes effect exactly once, under the version recorded in its row.
//
// Versions come from a hybrid logical clock that observes, on taking over,
// the largest version in the table, and the origin's version whenever a
// publish finds a newer one stored (another writer, say the admin API). So
// each row gets a version above every earlier row's, whatever the wall
// clocks of the machines the syncers ran on, and a row being published
// always becomes the key's current state: the outbox is the newest word on
// its keys.
//
// # Rejected rows
//
// A row that can never be published is parked: it breaks the dataplane's
// limits, or its value breaks its namespace's schema (Config.Schemas; by
// default routes and keys are checked: a route without upstreams, a field
// given twice or misspelt, ...). It is marked done (published_at) with the
// reason, naming the field, in its error column, counted in
// dataplane_pgsync_rejected_total and logged; nothing is written to the
// origin, so the key keeps serving its last good value, and the rows after
// it go on. Find parked rows with
//
//	SELECT id, namespace, key, error FROM dataplane_outbox WHERE error IS NOT NULL;
//
// and correct them by inserting a new row.
//
// # One active syncer
//
// Any number of Syncers may run; one is active. A Syncer becomes active by
// taking the session-level advisory lock pg_try_advisory_lock(LockID) on a
// dedicated connection, and does all its work (LISTEN, reads, reservations,
// marks) on that connection. The others stand by, retrying the lock on every
// notification and every StandbyInterval, and one takes over within about
// that interval when the active one's connection ends (a crash, a kill, a
// network failure: PostgreSQL releases a session's locks with it).
//
// Why an advisory lock and not SELECT ... FOR UPDATE SKIP LOCKED with
// several workers: per-key order needs one worker per key at a time, and
// SKIP LOCKED would let a second worker publish a key's next row while the
// first is still publishing the previous one; the lock keeps one global
// order with no coordination beyond it. Throughput is bounded by one
// syncer's origin writes, which is far above the rate of control-plane
// changes. A standby that waits in pg_try_advisory_lock rather than blocking
// in pg_advisory_lock never holds a query open, so a statement_timeout on the
// database cannot break it, and it answers cancellation at once. Because
// every statement of the active syncer runs on the lock's own session, a
// syncer that lost its lock (its connection broke) cannot reserve or mark
// anything, and the conditional UPDATEs refuse rows another syncer has since
// changed: at worst its one in-flight publish lands, with a version lower
// than anything the new syncer assigns, and is overwritten.
//
// # Latency and failures
//
// The active syncer LISTENs on dataplane_outbox and wakes on every commit of
// a row; PollInterval is only the fallback should a notification be lost.
// When the database or the origin fails, Run logs, counts
// (dataplane_pgsync_errors_total) and retries with exponential backoff, and
// carries on where it stopped when they return. It returns only when its
// context ends, after finishing the row in hand.
package pgsync
