package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/sentinel"
)

func init() {
	commands["sentinel"] = command{summary: "run the HTTP gateway serving routes and API keys from memory", run: runSentinel}
}

const sentinelSynopsis = `Usage: dataplane sentinel -origin URL [flags]

Runs the gateway. For each request it looks up routes/<Host>, checks the API key
(Authorization: Bearer ...) against keys/<keyspace>/<sha256 of key> when the
route requires one, and proxies to the route's upstreams. Everything is served
from memory; the admin listener serves /healthz, /readyz, /metrics and
token-protected /debug/records/{ns}/{key} and /debug/members.

TLS: -tls-cert/-tls-key serve the gateway over HTTPS; -admin-tls-cert/
-admin-tls-key the admin listener, and -admin-tls-client-ca requires client
certificates there (mutual TLS). Gossip is encrypted: -gossip-key is required
unless -insecure (or -gossip=false).`

func runSentinel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sentinel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	listen := fs.String("listen", ":8080", "gateway listen address")
	adminListen := fs.String("admin-listen", ":9090", "admin listen address (health, readiness, metrics, debug)")
	adminToken := fs.String("admin-token", "", "bearer token for the admin debug endpoints (empty: disabled)")
	dialTimeout := fs.Duration("dial-timeout", 2*time.Second, "bound on connecting to one upstream before trying the next")
	upstreamTimeout := fs.Duration("upstream-timeout", 30*time.Second, "bound on waiting for an upstream's response headers")
	keyIDHeader := fs.String("key-id-header", "X-Dataplane-Key-Id", "header carrying the verified key's id to the upstream")
	var peers cli.StringList
	fs.Var(&peers, "peers", "admin URLs of other sentinels (http://host:9090,...) to warm from at start when the origin is down\nand there is no local snapshot file; they serve GET /v1/snapshots/{ns} to holders of their admin token.\nAn https:// peer is trusted with -origin-ca and shown -origin-cert")
	peerToken := fs.String("peer-token", "", "the peers' admin token (default: -admin-token, as a fleet usually shares one)")
	maxBody := fs.Int64("max-body", 0, "largest request body passed to an upstream, in bytes; larger ones get 413 (0: no limit)")
	missRate := fs.Float64("miss-rate", 20, "lookups of hosts/keys not in memory per second per client address (IPv6: /64), with a burst of 5 s' worth; past it: 429 (negative: no limit)")
	maxMisses := fs.Int("max-concurrent-misses", 64, "lookups of hosts/keys not in memory in flight at once; a lookup that waits 250ms for a slot gets 503 (negative: no limit)")
	bodyTimeout := fs.Duration("body-timeout", 30*time.Second, "longest pause in a request body, and the allowance on top of -body-min-rate")
	failClosed := fs.String("fail-closed", "keys=5m", "staleness policy per namespace: ns=D fails closed (503, never allow) once the node has not been\nproven current for D (no change-log read, no gossip change, no snapshot); ns=off serves the last good value\nfor ever, marked stale. Comma-separated; namespaces not named keep the default (keys=5m, others off)")
	bodyMinRate := fs.Int64("body-min-rate", 512, "slowest average rate of a request body, bytes/s; a slower client gets 408 (negative: off)")
	var gwTLS, admTLS serverTLSFlags
	gwTLS.register(fs, "", "gateway")
	admTLS.register(fs, "admin-", "admin listener")
	fs.Usage = cli.Usage(fs, stderr, sentinelSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *maxBody < 0 {
		return usageError{fmt.Errorf("-max-body must not be negative, got %d", *maxBody)}
	}
	gwTLSCfg, err := gwTLS.config()
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
	cfg, err := nf.nodeConfig(store, log, reg)
	if err != nil {
		return err
	}
	if cfg.Staleness, err = dataplane.ParseStaleness(*failClosed); err != nil {
		return usageError{fmt.Errorf("-fail-closed: %w", err)}
	}
	if cfg.Peers, err = peerSources(peers, *peerToken, *adminToken, nf); err != nil {
		return err
	}
	node, err := dataplane.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	gwLn, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	var admLn net.Listener
	if *adminListen != "" {
		if admLn, err = net.Listen("tcp", *adminListen); err != nil {
			gwLn.Close()
			return fmt.Errorf("-admin-listen: %w", err)
		}
	}
	srv, err := sentinel.Start(sentinel.ServerConfig{
		Node:           node,
		Listener:       gwLn,
		AdminListener:  admLn,
		AdminToken:     *adminToken,
		TLS:            gwTLSCfg,
		AdminTLS:       admTLSCfg,
		MaxRequestBody: *maxBody,
		BodyTimeout:    *bodyTimeout,
		BodyMinRate:    *bodyMinRate,
		Registerer:     reg, // and /metrics: it is a Gatherer
		Logger:         log,
		Gateway: sentinel.Proxy{
			DialTimeout:     *dialTimeout,
			UpstreamTimeout: *upstreamTimeout,
			KeyIDHeader:     *keyIDHeader,
			MissRate:        *missRate,

			MaxConcurrentMisses: *maxMisses,
		},
	})
	if err != nil {
		return err
	}
	log.Info("sentinel serving", "addr", srv.Addr(), "tls", gwTLSCfg != nil, "admin", srv.AdminAddr(), "admin_tls", admTLSCfg != nil, "ready", node.Ready())
	fmt.Fprintf(stdout, "sentinel listening on %s://%s (admin %s://%s)\n", scheme(gwTLSCfg), srv.Addr(), scheme(admTLSCfg), srv.AdminAddr())
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// peerSources builds one snapshot source per -peers URL, tried in order.
func peerSources(urls []string, token, adminToken string, nf nodeFlags) ([]dataplane.SnapshotSource, error) {
	if len(urls) == 0 {
		return nil, nil
	}
	if token == "" {
		token = adminToken
	}
	if token == "" {
		return nil, usageError{fmt.Errorf("-peers needs -peer-token or -admin-token: peers serve snapshots only to holders of their admin token")}
	}
	tlsCfg, err := nf.originTLS.config()
	if err != nil {
		return nil, err
	}
	// One client for every peer: TLS as for the origin, and a bound on a
	// peer that accepts the connection and then stalls (the warm-up's own
	// deadline bounds the whole read too).
	client := &http.Client{Timeout: peerTimeout, Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
	var out []dataplane.SnapshotSource
	for i, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, usageError{fmt.Errorf("-peers #%d: %q is not an http:// or https:// URL of a sentinel's admin listener", i+1, u)}
		}
		// HTTPPeer asks for the peer's proven snapshot (?proof=1) where the
		// node checks checkpoints: a verifying node refuses an unproven
		// peer answer once it enforces them.
		out = append(out, &dataplane.HTTPPeer{URL: u, Token: token, Client: client})
	}
	return out, nil
}

// peerTimeout bounds one snapshot read from a peer.
const peerTimeout = 2 * time.Minute
