package main

import (
	"bytes"
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}, {"--version"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "dataplane ") || !strings.Contains(out, runtime.GOOS+"/"+runtime.GOARCH) || strings.Count(out, "\n") != 1 {
			t.Errorf("%v printed %q, want one line naming the release and platform", args, out)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version", "extra"}, &stdout, &stderr); code != 2 {
		t.Errorf("version extra: exit %d, want 2", code)
	}
}

func TestVersionLine(t *testing.T) {
	full := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/dataplane/dataplane", Version: "v0.1.0"},
		Settings: []debug.BuildSetting{
			{Key: "-tags", Value: "charts"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	plat := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name    string
		ldflags string
		bi      *debug.BuildInfo
		want    string
	}{
		{"module version and vcs", "", full, "dataplane v0.1.0 (commit 0123456789ab+modified, 2026-12-01T10:00:00Z, tags charts; go1.26.8 " + plat + ")"},
		{"ldflags wins", "v9.9.9", full, "dataplane v9.9.9 (commit"},
		{"devel without vcs", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "dataplane (devel) (go1.26.8 " + plat + ")"},
		{"no build info", "", nil, "dataplane (devel) (" + runtime.Version() + " " + plat + ")"},
		{"ldflags without build info", "v1.0.0", nil, "dataplane v1.0.0 ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionLine(tc.ldflags, tc.bi); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %q, want prefix %q", got, tc.want)
			}
		})
	}
}
