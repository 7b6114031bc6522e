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
		{"sentinel peers without token", []string{"sentinel", "-origin", "ORIGIN", "-gossip=false", "-peers", "http://127.0.0.1:1"}, nil, 2, "-peers needs -peer-token or -admin-token"},
		{"sentinel bad peer", []string{"sentinel", "-origin", "ORIGIN", "-gossip=false", "-admin-token", "t", "-peers", "ftp://x"}, nil, 2, "-peers #1"},
		// Gossip is encrypted unless -insecure says otherwise, on every
		// command that joins a cluster (dev is exempt: loopback only).
		{"cachenode gossip without key", []string{"cachenode", "-origin", "ORIGIN", "-write-token", "t", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, nil, 2, "gossip without encryption refused"},
		{"cachenode gossip key from env", []string{"cachenode", "-origin", "ORIGIN", "-write-token", "t"}, map[string]string{"DATAPLANE_GOSSIP_KEY": "%%%"}, 2, "-gossip-key #1: not base64"},
		{"publish serve gossip without key", []string{"publish", "-origin", "ORIGIN", "-token", "t", "-listen", "127.0.0.1:0", "serve"}, nil, 2, "gossip without encryption refused"},
		{"publish seeds without key", []string{"publish", "-origin", "ORIGIN", "-seeds", "127.0.0.1:1", "put", "routes", "a", "v"}, nil, 2, "gossip without encryption refused"},
		{"sync seeds without key", []string{"sync", "-origin", "ORIGIN", "-database-url", "postgres://127.0.0.1:1/x", "-seeds", "127.0.0.1:1"}, nil, 2, "gossip without encryption refused"},
		{"publish serve without token", []string{"publish", "-origin", "ORIGIN", "-gossip=false", "serve"}, nil, 2, "serve needs -token"},
		// TLS flags are checked before anything starts.
		{"sentinel tls cert without key", []string{"sentinel", "-tls-cert", "cert.pem"}, nil, 2, "-tls-*: tlsconfig: a TLS listener needs both a certificate and a key file"},
		{"sentinel admin tls old version", []string{"sentinel", "-admin-tls-cert", "c.pem", "-admin-tls-key", "k.pem", "-admin-tls-min-version", "1.0"}, nil, 2, `-admin-tls-*: tlsconfig: minimum TLS version "1.0"`},
		{"sentinel client ca alone", []string{"sentinel", "-tls-client-ca", "ca.pem"}, nil, 2, "both a certificate and a key"},
		{"sentinel origin cert without key", []string{"sentinel", "-origin", "https://127.0.0.1:1", "-origin-cert", "c.pem", "-gossip=false"}, nil, 2, "-origin-ca/-origin-cert/-origin-key"},
		{"sentinel negative max body", []string{"sentinel", "-max-body", "-1"}, nil, 2, "-max-body must not be negative"},
		{"cachenode tls missing files", []string{"cachenode", "-origin", "ORIGIN", "-write-token", "t", "-tls-cert", "/nonexistent/c.pem", "-tls-key", "/nonexistent/k.pem"}, nil, 2, "/nonexistent/c.pem"},
		{"sync admin tls key alone", []string{"sync", "-origin", "ORIGIN", "-database-url", "postgres://x", "-admin-tls-key", "k.pem"}, nil, 2, "-admin-tls-*"},
		{"publish api client cert alone", []string{"publish", "-api", "https://127.0.0.1:1", "-api-client-cert", "c.pem", "get", "routes", "a"}, nil, 2, "-api-client-cert"},
		{"cachenode help lists tls", []string{"cachenode", "-help"}, nil, 0, "$DATAPLANE_TLS_CLIENT_CA"},
		{"sentinel help lists admin tls", []string{"sentinel", "-help"}, nil, 0, "$DATAPLANE_ADMIN_TLS_CLIENT_CA"},
		{"publish help lists tls", []string{"publish", "-help"}, nil, 0, "-api-client-key"},
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
