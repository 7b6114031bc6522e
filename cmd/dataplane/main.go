// Command dataplane runs the dataplane's services and tools:
//
//	dataplane dev        everything on loopback in one process (start here)
//	dataplane sentinel   the HTTP gateway serving routes and API keys from memory
//	dataplane cachenode  the optional regional cache tier
//	dataplane publish    write, read, delete, import and export records
//	dataplane sync       PostgreSQL outbox → dataplane
//	dataplane bench      compare the RFC's options on one simulated deployment
//	dataplane version    the release, commit and Go version (also -version)
//
// Each subcommand's -help lists its flags; every flag can also be set by an
// environment variable (DATAPLANE_<FLAG>) or a -config JSON file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/dataplane/dataplane/internal/cli"
)

// command is one subcommand: run parses its own args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit code: 0 on
// success, 2 for usage errors, 1 for failures.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "-version" || args[0] == "--version" {
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "dataplane: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "dataplane %s: %v\n(see dataplane %s -help)\n", args[0], err, args[0])
		return 2
	default:
		fmt.Fprintf(stderr, "dataplane %s: %v\n", args[0], err)
		return 1
	}
}

// parseFlags parses args, then DATAPLANE_* variables and the -config file,
// into fs (cli.Parse). -help comes back as flag.ErrHelp; any other error is
// a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := cli.Parse(fs, args, envPrefix); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if flagsParsed != nil {
		return flagsParsed(fs)
	}
	return nil
}

// flagsParsed, when set (by tests), is shown each command's flags once
// parsed; an error it returns ends the command there.
var flagsParsed func(*flag.FlagSet) error

// usageError marks errors in the command line or configuration.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usage(w io.Writer) {
	fmt.Fprintln(w, "dataplane: serve routes, API keys and configs from memory at the edge, fresh within a second.")
	fmt.Fprintln(w, "\nUsage: dataplane <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'dataplane <command> -help' for a command's flags. Start with 'dataplane dev'.")
}
