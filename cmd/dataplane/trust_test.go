package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/sign"
)

// TestTrustedKeysHoldingNoKey: a -trusted-keys list or file that holds no
// key (only comments or blank lines, or an empty file) stops a sentinel
// and a cache node at start with an error naming the flag, instead of
// turning signing off without a word; only an empty flag turns it off.
func TestTrustedKeysHoldingNoKey(t *testing.T) {
	tmp := t.TempDir()
	comments := filepath.Join(tmp, "comments.pub")
	empty := filepath.Join(tmp, "empty.pub")
	if err := os.WriteFile(comments, []byte("# publisher keys\n\n# (rotated out)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, list := range []string{"file:" + comments, "file:" + empty, "# none"} {
		for _, cmd := range []string{"sentinel", "cachenode"} {
			args := append(nodeArgs(cmd), "-origin", "dir://"+filepath.Join(tmp, "origin"), "-trusted-keys", list)
			code, started, _, stderr := runBriefly(t, " on http://", args...)
			if started || code != 2 || !strings.Contains(stderr, "-trusted-keys") || !strings.Contains(stderr, "no key") {
				t.Errorf("%s -trusted-keys %q: started %v, exit %d, stderr %q; want exit 2 naming the flag", cmd, list, started, code, stderr)
			}
		}
	}
	if v, err := (&nodeFlags{}).verifier(); v != nil || err != nil {
		t.Fatalf("no -trusted-keys: %v, %v; want signing off", v, err)
	}
}

// TestNodesLogTrustedKeys: a verifying sentinel and cache node log, at
// start, the ids of the keys they trust; one without -trusted-keys warns
// that signing is off.
func TestNodesLogTrustedKeys(t *testing.T) {
	tmp := t.TempDir()
	pub1, _, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(tmp, "trusted.pub")
	if err := os.WriteFile(keys, []byte("# current\n"+sign.EncodePublicKey(pub1)+"\n# next\n"+sign.EncodePublicKey(pub2)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	origin := "dir://" + filepath.Join(tmp, "origin")
	ready := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`)
	for _, cmd := range []string{"sentinel", "cachenode"} {
		p, _ := start(t, ready, append(nodeArgs(cmd), "-origin", origin, "-trusted-keys", "file:"+keys)...)
		logs := p.stderr.String()
		if !strings.Contains(logs, "verifying publisher signatures") || !strings.Contains(logs, sign.IDOf(pub1).String()) || !strings.Contains(logs, sign.IDOf(pub2).String()) {
			t.Errorf("%s trusting two keys logged at start:\n%s\nwant both key ids %s, %s", cmd, logs, sign.IDOf(pub1), sign.IDOf(pub2))
		}
		off, _ := start(t, ready, append(nodeArgs(cmd), "-origin", origin)...)
		if logs := off.stderr.String(); !strings.Contains(logs, "signing off") {
			t.Errorf("%s without -trusted-keys logged at start:\n%s\nwant a warning that signing is off", cmd, logs)
		}
	}
}

// TestDevRefusesNonLoopbackHost: dev binds a host that is not loopback only
// with -insecure, and then warns, before starting, of what that exposes.
func TestDevRefusesNonLoopbackHost(t *testing.T) {
	dev := func(args ...string) []string {
		return append([]string{"dev", "-ports", "auto", "-data-dir", t.TempDir()}, args...)
	}
	for _, host := range []string{"0.0.0.0", "::", "192.0.2.1", "example.com"} {
		code, started, stdout, stderr := runBriefly(t, "Ctrl-C", dev("-host", host)...)
		if started || code != 2 || !strings.Contains(stderr, "-insecure") {
			t.Errorf("dev -host %s: started %v, exit %d, stdout %q, stderr %q; want refused, naming -insecure", host, started, code, stdout, stderr)
		}
	}
	for _, host := range []string{"127.0.0.1", "127.0.0.2", "::1", "localhost"} {
		if !isLoopback(host) {
			t.Errorf("isLoopback(%q) = false", host)
		}
	}
	// On loopback it starts, and says which key its nodes trust.
	if _, started, out, errOut := runBriefly(t, "Ctrl-C", dev("-host", "127.0.0.1")...); !started || !regexp.MustCompile(`trusting key id [0-9a-f]{16} only`).MatchString(out) {
		t.Errorf("dev on loopback: started %v, guide %q (stderr %q); want the trusted key id", started, out, errOut)
	}
	// With -insecure the warning comes first, whether or not this machine
	// lets the cluster start on that address.
	_, _, _, warn := runBriefly(t, "Ctrl-C", dev("-host", "0.0.0.0", "-insecure")...)
	for _, want := range []string{"WARNING", "-insecure", "0.0.0.0", "listener", "plaintext gossip", "publisher API", `well-known dev token "dev-token"`} {
		if !strings.Contains(warn, want) {
			t.Errorf("dev -host 0.0.0.0 -insecure warned %q, missing %q", warn, want)
		}
	}
}

// runBriefly runs the command args until it ends, or until its stdout
// shows ready (it started), then stops it; it returns the exit code,
// whether it started, and its output.
func runBriefly(t *testing.T, ready string, args ...string) (code int, started bool, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &out, &errOut) }()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case code = <-done:
			return code, started, out.String(), errOut.String()
		case <-deadline:
			t.Fatalf("%v neither started nor ended: %s %s", args, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
			if !started && strings.Contains(out.String(), ready) {
				started = true
				cancel()
			}
		}
	}
}

// nodeArgs are the arguments that start cmd (sentinel or cachenode) on
// free loopback ports without gossip.
func nodeArgs(cmd string) []string {
	args := []string{cmd, "-gossip=false", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}
	if cmd == "cachenode" {
		args = append(args, "-write-token", "test-write-token")
	}
	return args
}

// TestRequireCheckpointsFlag: -require-checkpoints without -trusted-keys
// (checkpoints are signed: nothing could match) stops a sentinel or a
// cache node at start with an error naming both flags; with -trusted-keys
// it reaches the node's configuration, and a cache node starts with it
// (its sentinels verify checkpoints through it: TestSentinelBehindTierRequiresCheckpoints).
func TestRequireCheckpointsFlag(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"sentinel", []string{"-require-checkpoints"}, "-trusted-keys"},
		{"cachenode", []string{"-require-checkpoints"}, "-trusted-keys"},
	} {
		args := append(nodeArgs(tc.cmd), "-origin", "dir://"+filepath.Join(tmp, "origin"))
		args = append(args, tc.args...)
		code, started, _, stderr := runBriefly(t, " on http://", args...)
		if started || code != 2 || !strings.Contains(stderr, "-require-checkpoints") || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s %q: started %v, exit %d, stderr %q; want exit 2 naming -require-checkpoints and %q", tc.cmd, tc.args, started, code, stderr, tc.want)
		}
	}
	args := append(nodeArgs("cachenode"), "-origin", "dir://"+filepath.Join(tmp, "origin"), "-require-checkpoints", "-trusted-keys", testPublicKey(t))
	if code, started, _, stderr := runBriefly(t, " on http://", args...); !started {
		t.Errorf("cachenode -require-checkpoints -trusted-keys: did not start (exit %d, stderr %q)", code, stderr)
	}
	nf := &nodeFlags{trusted: testPublicKey(t), requireCkpt: true}
	cfg, err := nf.nodeConfig(nil, slog.New(slog.DiscardHandler), nil)
	if err != nil || !cfg.RequireCheckpoints || cfg.Verifier == nil {
		t.Fatalf("nodeConfig with -trusted-keys -require-checkpoints: RequireCheckpoints %v, Verifier %v, err %v", cfg.RequireCheckpoints, cfg.Verifier, err)
	}
}

// testPublicKey returns a new publisher public key as -trusted-keys takes it.
func testPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return sign.EncodePublicKey(pub)
}
