package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/internal/testkit"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePair returns a port p with p and p+1 free a moment ago (the two
// example upstreams).
func freePair(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		p := freePort(t)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}

// TestDevPortTaken runs `dataplane dev` with one of its ports taken: it
// exits 1 with one line naming the port, the cause and the flag that fixes
// it, and leaves nothing bound.
func TestDevPortTaken(t *testing.T) {
	for _, tc := range []struct {
		name, flag string
	}{
		{"upstream", "-upstream-port"},
		{"cache node", "-cachenode-port"},
		{"publisher", "-publisher-port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			taken := ln.Addr().(*net.TCPAddr).Port
			up, cn := freePair(t), freePort(t)
			args := []string{"dev", "-data-dir", t.TempDir(), "-upstream-port", fmt.Sprint(up), "-cachenode-port", fmt.Sprint(cn), tc.flag, fmt.Sprint(taken)}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			msg := stderr.String()
			if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, fmt.Sprint(taken)) ||
				!strings.Contains(msg, "address already in use") || !strings.Contains(msg, tc.flag) || !strings.Contains(msg, "-ports auto") {
				t.Fatalf("exit %d, stderr %q; want exit 1 and one line naming port %d, the cause and %s", code, msg, taken, tc.flag)
			}
			if strings.Contains(msg, "panic") || stdout.Len() != 0 {
				t.Fatalf("stdout %q stderr %q", stdout.String(), msg)
			}
			if tc.flag != "-upstream-port" { // the upstreams were bound first: free again
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", up))
				if err != nil {
					t.Fatalf("upstream port still bound after the failed start: %v", err)
				}
				l.Close()
			}
		})
	}
}

// TestDevPortsAuto runs `dataplane dev -ports auto` beside a listener on
// the default sentinel port, follows the printed export line to make a
// request, and stops it with the context.
func TestDevPortsAuto(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.1:8081"); err == nil {
		defer ln.Close() // auto ports must not need the default ones
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-ports", "auto", "-data-dir", t.TempDir()}, &stdout, &stderr)
	}()
	exited := -1
	if !testkit.Poll(30*time.Second, func() bool {
		select {
		case exited = <-done:
			return true
		default:
		}
		return strings.Contains(stdout.String(), "Ctrl-C")
	}) {
		t.Fatalf("no guide after 30s: %s %s", stdout.String(), stderr.String())
	}
	if exited != -1 {
		t.Fatalf("dev exited %d: %s", exited, stderr.String())
	}
	out := stdout.String()
	m := regexp.MustCompile(`export DP_SENTINEL=(http://\S+) DP_SENTINEL_PORTS='(\d+ \d+ \d+)'`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "gossip ") || !strings.Contains(out, "cachenode-1=127.0.0.1:") {
		t.Fatalf("guide lacks the export line or the gossip addresses:\n%s", out)
	}
	if strings.Contains(m[1], ":8081") {
		t.Fatalf("-ports auto used the default port: %s", m[1])
	}
	// The fleet page's address is printed with the others, and opens in a
	// browser-like client (the token once, then its cookie).
	fp := regexp.MustCompile(`(?m)^  fleet page     (http://127\.0\.0\.1:\d+/debug/fleet\?token=dev-token) `).FindStringSubmatch(out)
	if fp == nil {
		t.Fatalf("guide lacks the fleet page's address:\n%s", out)
	}
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar}).Get(fp[1])
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.RawQuery != "" || !strings.Contains(string(page), "Fleet as seen by <code id=\"self\">sentinel-1</code>") {
		t.Fatalf("fleet page %s: %d at %s\n%s", fp[1], resp.StatusCode, resp.Request.URL, page)
	}
	req, _ := http.NewRequest("GET", m[1]+"/hello", nil)
	req.Host = devcluster.APIHost
	req.Header.Set("Authorization", "Bearer "+devcluster.GoodKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "upstream A") {
		t.Fatalf("request through $DP_SENTINEL: %d %s", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(stdout.String(), "stopped") {
		t.Fatalf("exit %d after cancel, stdout tail %q", code, stdout.String()[len(out):])
	}
}

// TestDevBadPortsFlag: -ports takes fixed or auto only.
func TestDevBadPortsFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"dev", "-ports", "random"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "-ports must be fixed or auto") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
