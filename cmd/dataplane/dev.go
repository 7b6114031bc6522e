package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/cli"
)

// defaultDevToken is dev's -token unless told otherwise: well known, so
// fit for loopback only.
const defaultDevToken = "dev-token"

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
	host := fs.String("host", "127.0.0.1", "loopback address every listener binds (another address needs -insecure)")
	token := fs.String("token", defaultDevToken, "token for the publisher API, cache node writes and admin debug endpoints")
	port := fs.Int("sentinel-port", 8081, "first sentinel's port; the others follow, admin ports are these plus 1000")
	pubPort := fs.Int("publisher-port", 8070, "publisher API port")
	cnPort := fs.Int("cachenode-port", 8090, "cache node port")
	upPort := fs.Int("upstream-port", 8061, "example upstream A's port; B is the next")
	ports := fs.String("ports", "fixed", "\"fixed\": the -*-port flags; \"auto\": free ports, printed at start")
	verbose := fs.Bool("v", false, "log what the cluster does to stderr")
	insecure := fs.Bool("insecure", false, "allow a -host that is not loopback, exposing every listener, plaintext gossip and the publisher API\n(with -token) to whoever reaches that address; a warning says so")
	fs.Usage = cli.Usage(fs, stderr, devSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *ports != "fixed" && *ports != "auto" {
		return usageError{fmt.Errorf("-ports must be fixed or auto, got %q", *ports)}
	}
	if !isLoopback(*host) {
		if !*insecure {
			return usageError{fmt.Errorf("-host %s is not a loopback address: dev's gossip is plaintext and its publisher API takes the token %q; pass -insecure to expose them anyway", *host, *token)}
		}
		fmt.Fprint(stderr, insecureWarning(*host, *token))
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

// isLoopback reports whether host names the loopback interface only:
// "localhost" or a loopback IP (127.0.0.0/8, ::1). Anything else, 0.0.0.0
// included, reaches beyond this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// insecureWarning says what dev exposes when it binds host, not loopback.
func insecureWarning(host, token string) string {
	tok := fmt.Sprintf("the token %q", token)
	if token == defaultDevToken {
		tok = fmt.Sprintf("the well-known dev token %q", token)
	}
	return fmt.Sprintf(`WARNING: -insecure: dataplane dev binds %s, not loopback. Whoever reaches that address gets:
  - every listener: 3 sentinels and their admin endpoints, the publisher API, the cache node,
    2 example upstreams, and 4 gossip members (TCP and UDP);
  - plaintext gossip: no encryption key, so anyone can listen to every change and join the cluster;
  - the publisher API, cache-node writes and admin endpoints behind %s:
    anyone who knows it can write signed routes and API keys and read every record.
Use it only on a network you trust; production nodes take -gossip-key, -trusted-keys and their own tokens.
`, host, tok)
}
