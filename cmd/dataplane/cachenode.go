package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
)

func init() {
	commands["cachenode"] = command{summary: "run a regional cache node in front of the origin", run: runCacheNode}
}

const cacheNodeSynopsis = `Usage: dataplane cachenode -origin URL -write-token T [flags]

Serves GET /v1/records/{namespace}/{key} from its own cache (ETag, If-None-Match
→ 304) in front of the origin, forwards writes, the change log and snapshots,
serves the publisher's signed checkpoints and snapshot proofs (never one older
than one it has read), and joins gossip for invalidations. Sentinels use a region's
cache nodes with -origin http://node-1:8081,http://node-2:8081 (rendezvous-hashed
per key) and verify everything the nodes serve, so -trusted-keys and
-require-checkpoints work behind the tier as against the origin. Given
-trusted-keys, the node serves only checkpoints those keys sign;
-require-checkpoints needs -trusted-keys here too and changes nothing else (the
node matches no checkpoints itself: the sentinels do).

Every write needs Authorization: Bearer <-write-token>; reads need
-read-token when one is set. TLS: -tls-cert/-tls-key serve the API over
HTTPS and -tls-client-ca requires client certificates (mutual TLS); sentinels
then use -origin https://... with -origin-ca, -origin-cert and -origin-key.
The -admin-tls-* flags do the same for the admin listener. Gossip is
encrypted: -gossip-key is required unless -insecure (or -gossip=false).`

func runCacheNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cachenode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	listen := fs.String("listen", ":8081", "listen address of the cache node API")
	adminListen := fs.String("admin-listen", ":9091", "admin listen address (health, metrics, debug)")
	writeToken := fs.String("write-token", "", "token required on writes forwarded to the origin (required)")
	readToken := fs.String("read-token", "", "token required on reads (empty: reads open)")
	adminToken := fs.String("admin-token", "", "bearer token for the admin debug endpoints")
	var apiTLS, admTLS serverTLSFlags
	apiTLS.register(fs, "", "cache node API")
	admTLS.register(fs, "admin-", "admin listener")
	fs.Usage = cli.Usage(fs, stderr, cacheNodeSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *writeToken == "" {
		return usageError{errors.New("-write-token is required")}
	}
	apiTLSCfg, err := apiTLS.config()
	if err != nil {
		return err
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
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.ReadToken = store, *writeToken, *readToken
	cfg.Cache = nf.cacheOptions()
	verifier, err := nf.verifier()
	if err != nil {
		return err
	}
	logTrust(log, verifier)
	if nf.requireCkpt && verifier == nil {
		return usageError{errors.New("-require-checkpoints needs -trusted-keys: checkpoints are signed")}
	}
	if verifier != nil {
		// Signatures pass through untouched; with -trusted-keys the
		// node also refuses what it cannot verify: records, and the
		// checkpoints and snapshot proofs it serves to the sentinels
		// behind it (which verify them again, and match them).
		cfg.Verifier = verifier
	}
	cfg.Logger, cfg.Registerer = log, reg
	cfg.Timing = nf.timing.timing()
	var members func() any
	if nf.gossip {
		// The cache node follows the change log when it gossips:
		// gossip's repair and its log tail's freshness need it.
		g, err := nf.gossipConfig()
		if err != nil {
			return err
		}
		cfg.Gossip = &g.Cluster
	}
	srv, err := cachenode.New(cfg)
	if err != nil {
		return usageError{err}
	}
	defer srv.Close()
	if nf.gossip {
		members = func() any { return srv.Members() }
	}
	errc := make(chan error, 2)
	// The largest body either way is a snapshot (PUT by a publisher, GET by
	// a sentinel).
	api := newAPIServer(srv, apiTLSCfg, log, wire.DefaultMaxSnapshotSize, wire.DefaultMaxSnapshotSize)
	apiAddr, err := listenAndServe(api, *listen, errc)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	defer api.Close()
	adm := newAdminServer(admin.Handler(admin.Config{
		Ready: srv.Ready, Gatherer: reg, Token: *adminToken, Inspect: srv.Inspect, Members: members,
	}), admTLSCfg, log)
	admAddr, err := listenAndServe(adm, *adminListen, errc)
	if err != nil {
		return fmt.Errorf("-admin-listen: %w", err)
	}
	defer adm.Close()
	log.Info("cache node serving", "addr", apiAddr.String(), "tls", apiTLSCfg != nil, "admin", admAddr.String(), "admin_tls", admTLSCfg != nil)
	fmt.Fprintf(stdout, "cache node on %s://%s (admin %s://%s)\n", scheme(apiTLSCfg), apiAddr, scheme(admTLSCfg), admAddr)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(api.Shutdown(sctx), adm.Shutdown(sctx))
}
