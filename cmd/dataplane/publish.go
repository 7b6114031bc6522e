package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/internal/tlsconfig"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/publisher/client"
	"github.com/dataplane/dataplane/record"
)

func init() {
	commands["publish"] = command{summary: "write, read, delete, import and export records; or serve the publisher API", run: runPublish}
}

const publishSynopsis = `Usage: dataplane publish [flags] <action> [args]

Actions:
  put NAMESPACE KEY VALUE    write a record; VALUE may be @file or - (stdin)
  get NAMESPACE KEY          print a record's value (version on stderr)
  delete NAMESPACE KEY       delete a record (a versioned tombstone)
  import [FILE|-]            write JSON Lines: {"namespace":..,"key":..,"value":{..}} or "delete":true;
                             bad lines are reported and skipped, the rest is written
  export NAMESPACE           print a namespace as JSON Lines
  serve                      run the publisher HTTP API (-listen, -token) with periodic snapshots

Either talk to a running publisher API (-api URL -token T), or write to the
origin directly (-origin URL); then, with -seeds, the change is also handed to
the gossip cluster at once (otherwise nodes see it through the change log
within their log interval, or their TTL).

With -wait 5s, put and delete wait until -share (default 1.0) of the nodes
of every region have applied the write and print the fleet receipt: per
region, nodes applied/total and those not yet applied; the exit status is 1
if it was not met in time (the write is durable either way).

The API (serve) needs -token on every request, compared in constant time and
never logged; -tls-cert/-tls-key serve it over HTTPS and -tls-client-ca
requires client certificates (mutual TLS). A client of an https:// -api
trusts -api-ca and presents -api-client-cert/-api-client-key. Gossip (serve, or -seeds) is
encrypted: -gossip-key is required unless -insecure.`

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.registerOrigin(fs)
	nf.registerGossip(fs)
	api := fs.String("api", "", "base URL of a running publisher API (instead of -origin)")
	token := fs.String("token", "", "publisher API token (with -api, and for serve)")
	listen := fs.String("listen", ":8070", "serve: API listen address")
	snapEvery := fs.Duration("snapshot-interval", time.Minute, "serve: how often namespace snapshots are written")
	tf := timingFlags{wan: &nf.wan}
	tf.register(fs)
	wait := fs.Duration("wait", 0, "put, delete: wait up to this long until -share of the nodes of every region have applied the write, and print the receipt (needs -seeds, or -api of a publisher in gossip); exit status 1 if not met")
	share := fs.Float64("share", 1, "with -wait: the fraction (0, 1] of each region's nodes that must apply the write")
	signingKey := signingKeyFlag(fs)
	var apiTLS serverTLSFlags
	apiTLS.register(fs, "", "publisher API (serve)")
	var apiCli tlsconfig.Client
	fs.StringVar(&apiCli.CAFile, "api-ca", "", "with an https:// -api: PEM CA file to trust (default: system roots)")
	fs.StringVar(&apiCli.CertFile, "api-client-cert", "", "with an https:// -api: PEM client certificate for an API that requires mutual TLS (with -api-client-key)")
	fs.StringVar(&apiCli.KeyFile, "api-client-key", "", "PEM private key file of -api-client-cert")
	fs.Usage = cli.Usage(fs, stderr, publishSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{errors.New("missing action (put, get, delete, import, export or serve)")}
	}
	action, rest := rest[0], rest[1:]
	want := map[string]int{"put": 3, "get": 2, "delete": 2, "export": 1, "serve": 0}
	if n, ok := want[action]; ok && len(rest) != n {
		return usageError{fmt.Errorf("%s takes %d arguments, got %d", action, n, len(rest))}
	}
	if action == "import" && len(rest) > 1 {
		return usageError{errors.New("import takes at most one file")}
	}
	log, err := nf.logger(stderr)
	if err != nil {
		return err
	}
	if *api != "" {
		if action == "serve" {
			return usageError{errors.New("serve runs the API itself: give -origin, not -api")}
		}
		ccfg := client.DefaultConfig().WithToken(*token)
		if apiCli.Enabled() {
			cc, err := apiCli.Config()
			if err != nil {
				return usageError{fmt.Errorf("-api-ca/-api-client-cert/-api-client-key: %w", err)}
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cc
			defer tr.CloseIdleConnections()
			ccfg.HTTPClient = &http.Client{Transport: tr}
		}
		c, err := client.New(*api, ccfg)
		if err != nil {
			return usageError{fmt.Errorf("-api: %w", err)}
		}
		return (&apiActions{c: c, wait: *wait, share: *share}).do(ctx, action, rest, stdout, stderr)
	}

	store, err := nf.openOrigin(ctx, log)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	cfg := publisher.DefaultConfig()
	cfg.Logger, cfg.Registerer = log, reg
	cfg.SnapshotInterval = *snapEvery
	cfg.Timing = tf.timing()
	if cfg.Signer, err = loadSigner(*signingKey); err != nil {
		return err
	}
	if action == "serve" {
		applyCheckpoints(&cfg) // Run issues them
	}
	var gn *gossip.Node
	if len(nf.seeds) > 0 || action == "serve" && nf.gossip {
		g, err := nf.gossipConfig()
		if err != nil {
			return err
		}
		if action != "serve" && nf.name == "" {
			g.Name = fmt.Sprintf("publish-%d", os.Getpid())
		}
		g.Observer = true // serves nothing: not counted in receipts
		g.Logger, g.Registerer = log, reg
		gn, err = gossip.New(g, gossip.Funcs{}, nil)
		if err != nil {
			return err
		}
		defer func() {
			_ = gn.Leave(2 * time.Second)
			_ = gn.Close()
		}()
		cfg.Notifier = gn
	}
	p, err := publisher.New(store, cfg)
	if err != nil {
		return err
	}
	if action == "serve" {
		tlsCfg, err := apiTLS.config()
		if err != nil {
			return err
		}
		var fleet func() gossip.FleetView
		if gn != nil {
			fleet = gn.Fleet
		}
		return servePublisher(ctx, p, *listen, *token, tlsCfg, reg, log, stdout, fleet)
	}
	if gn != nil && len(nf.seeds) > 0 {
		waitJoined(ctx, gn)
	}
	if *wait > 0 && gn == nil {
		return usageError{errors.New("-wait needs -seeds (a gossip member to count the fleet's acknowledgements) or -api")}
	}
	return local(ctx, p, action, rest, stdout, stderr, *wait, *share)
}

// waitJoined gives a short-lived gossip node a moment to learn the members
// it will push to.
func waitJoined(ctx context.Context, gn *gossip.Node) {
	deadline := time.Now().Add(3 * time.Second)
	for len(gn.Members()) < 2 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
}

func readValue(arg string, stdin io.Reader) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(io.LimitReader(stdin, record.MaxValueSize+1))
	case strings.HasPrefix(arg, "@"):
		return os.ReadFile(arg[1:])
	}
	return []byte(arg), nil
}

// printReceipt waits for rec's receipt and prints it; an error if not met.
func printReceipt(ctx context.Context, p *publisher.Publisher, rec record.Record, wait time.Duration, share float64, stdout io.Writer) error {
	if wait <= 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	r, err := p.Receipt(wctx, rec, share)
	fmt.Fprint(stdout, r.String())
	return err
}

func local(ctx context.Context, p *publisher.Publisher, action string, args []string, stdout, stderr io.Writer, wait time.Duration, share float64) error {
	switch action {
	case "put":
		v, err := readValue(args[2], os.Stdin)
		if err != nil {
			return err
		}
		rec, err := p.Put(ctx, args[0], args[1], v)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "put %s/%s version %s\n", rec.Namespace, rec.Key, rec.Version)
		return printReceipt(ctx, p, rec, wait, share, stdout)
	case "delete":
		rec, err := p.Delete(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s/%s version %s\n", rec.Namespace, rec.Key, rec.Version)
		return printReceipt(ctx, p, rec, wait, share, stdout)
	case "get":
		rec, err := p.Get(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		if rec.Tombstone {
			return fmt.Errorf("%s/%s was deleted at version %s", rec.Namespace, rec.Key, rec.Version)
		}
		fmt.Fprintf(stderr, "version %s (%s)\n", rec.Version, rec.Version.Time().UTC().Format(time.RFC3339Nano))
		stdout.Write(rec.Value)
		if len(rec.Value) > 0 && rec.Value[len(rec.Value)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
	case "export":
		return p.Export(ctx, args[0], stdout)
	case "import":
		in := io.Reader(os.Stdin)
		if len(args) == 1 && args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		bar := progress(stderr)
		st, err := p.Import(ctx, in, bar)
		bar(st)
		fmt.Fprintln(stderr)
		printImport(stdout, st)
		if err != nil {
			return err
		}
		if st.Rejected > 0 {
			return fmt.Errorf("%d of %d lines rejected", st.Rejected, st.Lines)
		}
	default:
		return usageError{fmt.Errorf("unknown action %q (put, get, delete, import, export or serve)", action)}
	}
	return nil
}

// progress returns an import progress callback that redraws one status
// line at most ten times a second.
func progress(w io.Writer) func(publisher.ImportStats) {
	var last time.Time
	return func(st publisher.ImportStats) {
		if time.Since(last) < 100*time.Millisecond && !last.IsZero() {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\rimporting: %d lines, %d written, %d unchanged, %d rejected", st.Lines, st.Written, st.Unchanged, st.Rejected)
	}
}

func printImport(w io.Writer, st publisher.ImportStats) {
	fmt.Fprintf(w, "import: %d lines: %d written, %d unchanged, %d rejected\n", st.Lines, st.Written, st.Unchanged, st.Rejected)
	for _, e := range st.Errors {
		fmt.Fprintf(w, "  rejected %s\n", e.Error())
	}
}

func servePublisher(ctx context.Context, p *publisher.Publisher, listen, token string, tlsCfg *tls.Config, reg *prometheus.Registry, log *slog.Logger, stdout io.Writer, fleet func() gossip.FleetView) error {
	if token == "" {
		return usageError{errors.New("serve needs -token: the API writes records and is never open")}
	}
	reg.MustRegister(collectors.NewGoCollector())
	mux := publisherMux(p, token, reg, fleet)
	// The largest body either way is a namespace: an import in, an export out.
	srv := newAPIServer(mux, tlsCfg, log, publisher.MaxRequestBody, publisher.MaxRequestBody)
	errc := make(chan error, 2)
	addr, err := listenAndServe(srv, listen, errc)
	if err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	defer srv.Close()
	go func() { errc <- p.Run(ctx) }()
	log.Info("publisher API serving", "addr", addr.String(), "tls", tlsCfg != nil)
	fmt.Fprintf(stdout, "publisher API on %s://%s\n", scheme(tlsCfg), addr)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// publisherMux is the publisher server's handler: the publisher API, its
// OpenAPI description (openapi.Publisher, which also documents the admin
// paths mounted here) and the admin endpoints (admin.PublisherHandler, which
// dataplane dev serves too).
func publisherMux(p *publisher.Publisher, token string, reg *prometheus.Registry, fleet func() gossip.FleetView) http.Handler {
	return admin.PublisherHandler(publisher.Handler(p, token), admin.Config{Gatherer: reg, Token: token, Fleet: fleet})
}

// apiActions performs the actions against a running publisher API, with
// the typed client.
type apiActions struct {
	c     *client.Client
	wait  time.Duration // put, delete: wait for the receipt
	share float64
}

func (a *apiActions) do(ctx context.Context, action string, args []string, stdout, stderr io.Writer) error {
	var opts []client.WriteOption
	if a.wait > 0 {
		opts = append(opts, client.Wait(a.wait, a.share))
	}
	switch action {
	case "put", "delete":
		var w client.Write
		var err error
		if action == "put" {
			v, rerr := readValue(args[2], os.Stdin)
			if rerr != nil {
				return rerr
			}
			w, err = a.c.Put(ctx, args[0], args[1], v, opts...)
		} else {
			w, err = a.c.Delete(ctx, args[0], args[1], opts...)
		}
		if err != nil && !errors.Is(err, client.ErrNotApplied) {
			return err
		}
		// The answer as the API gave it, receipt included: JSON, for scripts.
		fmt.Fprintf(stderr, "version %s\n", w.Version)
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		if eerr := enc.Encode(w); eerr != nil {
			return eerr
		}
		if err != nil {
			return errors.New("receipt not met within -wait (see the regions and pending nodes above)")
		}
		return nil
	case "get":
		rec, err := a.c.Get(ctx, args[0], args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "version %s (%s)\n", rec.Version, rec.Version.Time().UTC().Format(time.RFC3339Nano))
		stdout.Write(rec.Value)
		if len(rec.Value) > 0 && rec.Value[len(rec.Value)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		return nil
	case "export":
		return a.c.Export(ctx, args[0], stdout)
	case "import":
		in := io.Reader(os.Stdin)
		if len(args) == 1 && args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f // a file can be sent again if the API asks to retry
		}
		st, err := a.c.Import(ctx, in)
		printImport(stdout, publisher.ImportStats{Lines: st.Lines, Written: st.Written, Unchanged: st.Unchanged, Rejected: st.Rejected, Errors: lineErrors(st.Errors)})
		if err != nil {
			return err
		}
		if st.Rejected > 0 {
			return fmt.Errorf("%d of %d lines rejected", st.Rejected, st.Lines)
		}
		return nil
	}
	return usageError{fmt.Errorf("unknown action %q", action)}
}

func lineErrors(es []client.LineError) []publisher.LineError {
	out := make([]publisher.LineError, len(es))
	for i, e := range es {
		out[i] = publisher.LineError{Line: e.Line, Reason: e.Reason}
	}
	return out
}
