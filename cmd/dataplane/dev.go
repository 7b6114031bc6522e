package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/cli"
)

func init() {
	commands["dev"] = command{summary: "run a whole dataplane on loopback in one process (start here)", run: runDev}
}

const devSynopsis = `Usage: dataplane dev [flags]

Starts, in one process on loopback: a directory origin, a publisher with its
HTTP API, a regional cache node, three sentinels joined by gossip (the third
reading through the cache node), two example upstreams, and example routes and
API keys. It prints ready-to-paste curl commands. Ctrl-C stops everything.`

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "JSON file of settings (keys are flag names)")
	dataDir := fs.String("data-dir", "", "where the origin and local snapshots live (default: a new temporary directory)")
	host := fs.String("host", "127.0.0.1", "loopback address every listener binds")
	token := fs.String("token", "dev-token", "token for the publisher API, cache node writes and admin debug endpoints")
	port := fs.Int("sentinel-port", 8081, "first sentinel's port; the others follow, admin ports are these plus 1000")
	pubPort := fs.Int("publisher-port", 8070, "publisher API port")
	cnPort := fs.Int("cachenode-port", 8090, "cache node port")
	upPort := fs.Int("upstream-port", 8061, "example upstream A's port; B is the next")
	verbose := fs.Bool("v", false, "log what the cluster does to stderr")
	fs.Usage = cli.Usage(fs, stderr, devSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dataDir == "" {
		d, err := os.MkdirTemp("", "dataplane-dev-")
		if err != nil {
			return err
		}
		*dataDir = d
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := devcluster.Start(ctx, devcluster.Config{
		DataDir:       *dataDir,
		Host:          *host,
		SentinelPorts: [3]int{*port, *port + 1, *port + 2},
		PublisherPort: *pubPort,
		CacheNodePort: *cnPort,
		UpstreamPorts: [2]int{*upPort, *upPort + 1},
		Token:         *token,
		Logger:        log,
	})
	if err != nil {
		return fmt.Errorf("%w (is another dataplane dev running? pick other ports with -sentinel-port etc.)", err)
	}
	c.PrintGuide(stdout)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping...")
	c.Close()
	fmt.Fprintln(stdout, "stopped")
	return nil
}
