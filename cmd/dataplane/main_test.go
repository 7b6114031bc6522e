package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stderr string
	}{
		{"no args", nil, nil, 2, "Usage: dataplane <command>"},
		{"help", []string{"help"}, nil, 0, "dev"},
		{"unknown", []string{"frobnicate"}, nil, 2, `unknown command "frobnicate"`},
		{"sentinel help", []string{"sentinel", "-help"}, nil, 0, "$DATAPLANE_FRESH_TTL"},
		{"sentinel without origin", []string{"sentinel"}, nil, 2, "-origin is required"},
		{"sentinel bad duration", []string{"sentinel", "-fresh-ttl", "soon"}, nil, 2, "fresh-ttl"},
		{"sentinel bad env", []string{"sentinel"}, map[string]string{"DATAPLANE_STALE_TTL": "x"}, 2, "DATAPLANE_STALE_TTL"},
		{"sentinel bad origin", []string{"sentinel", "-origin", "ftp://x"}, nil, 2, `unknown scheme "ftp"`},
		{"sentinel gossip without key", []string{"sentinel", "-origin", "ORIGIN"}, nil, 2, "gossip without encryption refused"},
		{"sentinel bad key", []string{"sentinel", "-origin", "ORIGIN", "-gossip-key", "%%%"}, nil, 2, "-gossip-key #1: not base64"},
		{"sentinel bad log level", []string{"sentinel", "-log-level", "loud"}, nil, 2, "-log-level"},
		{"publish no action", []string{"publish", "-origin", "ORIGIN"}, nil, 2, "missing action"},
		{"publish wrong arity", []string{"publish", "-origin", "ORIGIN", "put", "routes"}, nil, 2, "put takes 3 arguments"},
		{"publish bad value", []string{"publish", "-origin", "ORIGIN", "put", "routes", "", "v"}, nil, 1, "empty key"},
		{"cachenode without token", []string{"cachenode", "-origin", "ORIGIN"}, nil, 2, "-write-token is required"},
		{"sync without database", []string{"sync", "-origin", "ORIGIN"}, nil, 2, "-database-url is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "ORIGIN" {
					args[i] = t.TempDir()
				}
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

// TestPublishRoundTrip drives put, get, import, export and delete against a
// directory origin, as a user would from a shell.
func TestPublishRoundTrip(t *testing.T) {
	origin := t.TempDir()
	runOK := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"publish", "-origin", origin}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("publish %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	runOK("put", "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:1"]}`)
	if out := runOK("get", "routes", "a.example.com"); !strings.Contains(out, "127.0.0.1:1") {
		t.Fatalf("get: %q", out)
	}
	if out := runOK("export", "routes"); !strings.Contains(out, `"key":"a.example.com"`) {
		t.Fatalf("export: %q", out)
	}
	runOK("delete", "routes", "a.example.com")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"publish", "-origin", origin, "get", "routes", "a.example.com"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "deleted") {
		t.Fatalf("get after delete: exit %d %s", code, stderr.String())
	}
}
