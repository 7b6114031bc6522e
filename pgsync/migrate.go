package pgsync

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLockID serializes concurrent Migrate calls (pg_advisory_xact_lock).
const migrateLockID int64 = 0x6470_6d69_6772_6174 // "dpmigrat"

// Beginner starts transactions; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy
// it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate brings the database's dataplane schema up to date: it applies, in
// one transaction, every embedded migration (migrations/*.sql, in name
// order) not yet recorded in dataplane_schema_migrations. Concurrent calls
// wait for each other; calling it again changes nothing.
func Migrate(ctx context.Context, db Beginner) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("pgsync migrate: %w", err)
	}
	sort.Strings(names)
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("pgsync migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockID); err != nil {
		return fmt.Errorf("pgsync migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS dataplane_schema_migrations (
		name       text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("pgsync migrate: %w", err)
	}
	for _, path := range names {
		name := path[len("migrations/"):]
		var applied bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM dataplane_schema_migrations WHERE name = $1)", name).Scan(&applied); err != nil {
			return fmt.Errorf("pgsync migrate %s: %w", name, err)
		}
		if applied {
			continue
		}
		sql, err := migrations.ReadFile(path)
		if err != nil {
			return fmt.Errorf("pgsync migrate %s: %w", name, err)
		}
		// No arguments: pgx sends it with the simple protocol, which runs
		// several statements.
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("pgsync migrate %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO dataplane_schema_migrations (name) VALUES ($1)", name); err != nil {
			return fmt.Errorf("pgsync migrate %s: %w", name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("pgsync migrate: commit: %w", err)
	}
	return nil
}
