package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

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
API keys. It prints the addresses in use (gossip too), a line of shell
variables, and ready-to-paste curl commands. Ctrl-C stops everything.

With -ports auto every listener takes a free port (a second dev beside the
first); otherwise the -*-port flags pick them.`

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
	ports := fs.String("ports", "fixed", "\"fixed\": the -*-port flags; \"auto\": free ports, printed at start")
	verbose := fs.Bool("v", false, "log what the cluster does to stderr")
	fs.Usage = cli.Usage(fs, stderr, devSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ports != "fixed" && *ports != "auto" {
		return usageError{fmt.Errorf("-ports must be fixed or auto, got %q", *ports)}
	}
	madeDir := ""
	if *dataDir == "" {
		d, err := os.MkdirTemp("", "dataplane-dev-")
		if err != nil {
			return err
		}
		*dataDir, madeDir = d, d
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
		AnyPorts:      *ports == "auto",
		Token:         *token,
		Logger:        log,
	})
	if err != nil {
		if madeDir != "" {
			os.RemoveAll(madeDir)
		}
		return devStartError(err)
	}
	c.PrintGuide(stdout)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping...")
	c.Close()
	fmt.Fprintln(stdout, "stopped")
	return nil
}

// portFlags maps devcluster.Config's port fields to the flags that set them.
var portFlags = map[string]string{
	"SentinelPorts": "-sentinel-port",
	"PublisherPort": "-publisher-port",
	"CacheNodePort": "-cachenode-port",
	"UpstreamPorts": "-upstream-port",
}

// devStartError turns a devcluster.Start error into one line that names the
// cause and the flag that fixes it.
func devStartError(err error) error {
	var le *devcluster.ListenError
	var pe *fs.PathError
	hint := ""
	switch {
	case errors.As(err, &le):
		hint = "is another dataplane dev running? pick another port with " + portFlags[le.Field] + ", or free ports with -ports auto"
	case errors.As(err, &pe):
		hint = "choose another folder with -data-dir"
	}
	msg := strings.Join(strings.Fields(err.Error()), " ") // one line
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return errors.New(msg)
}
