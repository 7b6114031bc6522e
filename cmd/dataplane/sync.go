package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/pgsync"
	"github.com/dataplane/dataplane/publisher"
)

func init() {
	commands["sync"] = command{summary: "publish the PostgreSQL outbox (dataplane_outbox) into the dataplane", run: runSync}
}

const syncSynopsis = `Usage: dataplane sync -database-url URL -origin URL [flags]

Reads the dataplane_outbox table in order (LISTEN/NOTIFY, polling as fallback),
publishes each row to the origin with a version fixed before publishing (so a
crash never loses or reorders a change), and marks it done. Several sync
processes may run: one is active (advisory lock), the others wait as hot
standbys. -migrate creates the outbox table, its indexes and triggers.`

func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.registerOrigin(fs)
	nf.registerGossip(fs)
	dsn := fs.String("database-url", "", "PostgreSQL connection string, e.g. postgres://user:pass@host:5432/db (required)")
	migrate := fs.Bool("migrate", false, "create or upgrade the outbox table before syncing")
	poll := fs.Duration("poll-interval", 5*time.Second, "fallback polling interval when no notification arrives")
	batch := fs.Int("batch-size", 100, "outbox rows read per batch")
	adminListen := fs.String("admin-listen", "", "admin listen address for /healthz, /metrics (empty: none)")
	tf := timingFlags{wan: &nf.wan}
	tf.register(fs)
	signingKey := signingKeyFlag(fs)
	var admTLS serverTLSFlags
	admTLS.register(fs, "admin-", "admin listener")
	fs.Usage = cli.Usage(fs, stderr, syncSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dsn == "" {
		return usageError{errors.New("-database-url is required")}
	}
	admTLSCfg, err := admTLS.config()
	if err != nil {
		return err
	}
	log, err := nf.logger(stderr)
	if err != nil {
		return err
	}
	store, err := nf.openOrigin(ctx, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	pcfg := publisher.DefaultConfig()
	pcfg.Logger, pcfg.Registerer = log, reg
	pcfg.Timing = tf.timing()
	if pcfg.Signer, err = loadSigner(*signingKey); err != nil {
		return err
	}
	applyCheckpoints(&pcfg)
	if len(nf.seeds) > 0 {
		g, err := nf.gossipConfig()
		if err != nil {
			return err
		}
		g.Logger, g.Registerer = log, reg
		gn, err := gossip.New(g, gossip.Funcs{}, nil)
		if err != nil {
			return err
		}
		defer func() { _ = gn.Leave(2 * time.Second); _ = gn.Close() }()
		pcfg.Notifier = gn
	}
	pub, err := publisher.New(store, pcfg)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		return usageError{fmt.Errorf("-database-url: %w", err)}
	}
	defer pool.Close()
	if *migrate {
		if err := pgsync.Migrate(ctx, pool); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		fmt.Fprintln(stdout, "outbox migrated")
	}
	scfg := pgsync.DefaultConfig()
	scfg.Pool, scfg.Publisher = pool, pub
	scfg.PollInterval, scfg.BatchSize = *poll, *batch
	scfg.Logger, scfg.Registerer = log, reg
	s, err := pgsync.New(scfg)
	if err != nil {
		return usageError{err}
	}
	if *adminListen != "" {
		srv := newAdminServer(admin.Handler(admin.Config{Gatherer: reg}), admTLSCfg, log)
		if _, err := listenAndServe(srv, *adminListen, nil); err != nil {
			return fmt.Errorf("-admin-listen: %w", err)
		}
		defer srv.Close()
	}
	if pcfg.IssueCheckpoints {
		// The process holding the key issues the checkpoints.
		cctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = pub.RunCheckpoints(cctx) // logged inside
		}()
		defer func() { stop(); <-done }()
	}
	fmt.Fprintln(stdout, "sync running")
	if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
