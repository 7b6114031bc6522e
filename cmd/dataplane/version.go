package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/dataplane/dataplane/internal/cli"
)

func init() {
	commands["version"] = command{summary: "print the version, commit and Go version of this binary (also -version)", run: runVersion}
}

// version is the release this binary was built as, set by
// -ldflags "-X main.version=v1.2.3" when the build has no module version
// or VCS information of its own (the Dockerfile's build, from a copy of the
// source without .git). Empty: taken from the build info.
var version string

const versionSynopsis = `Usage: dataplane version

Prints the release this binary was built as, the commit it was built from
(with "+modified" when the working tree had uncommitted changes), the
commit's time, the Go version and the platform.`

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = cli.Usage(fs, stderr, versionSynopsis, envPrefix)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	bi, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintln(stdout, versionLine(version, bi))
	return err
}

// versionLine describes a build in one line:
//
//	dataplane v1.2.3 (commit 0123456789ab+modified, 2026-12-01T10:00:00Z; go1.26.8 linux/amd64)
//
// The release is ldflagsVersion if set, else the main module's version
// from bi ("(devel)" for a plain go build of a checkout without VCS
// information). Parts bi does not know are left out. bi may be nil (a
// binary without build info).
func versionLine(ldflagsVersion string, bi *debug.BuildInfo) string {
	rel := ldflagsVersion
	var vcs []string
	goVersion := runtime.Version()
	if bi != nil {
		if rel == "" {
			rel = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		s := map[string]string{}
		for _, kv := range bi.Settings {
			s[kv.Key] = kv.Value
		}
		if rev := s["vcs.revision"]; rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if s["vcs.modified"] == "true" {
				rev += "+modified"
			}
			vcs = append(vcs, "commit "+rev)
		}
		if t := s["vcs.time"]; t != "" {
			vcs = append(vcs, t)
		}
		if tags := s["-tags"]; tags != "" {
			vcs = append(vcs, "tags "+tags)
		}
	}
	if rel == "" {
		rel = "(devel)"
	}
	detail := goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
	if len(vcs) > 0 {
		detail = strings.Join(vcs, ", ") + "; " + detail
	}
	return fmt.Sprintf("dataplane %s (%s)", rel, detail)
}
