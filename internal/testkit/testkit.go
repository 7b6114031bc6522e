// Package testkit holds the small helpers that tests of several packages
// share: waiting on a condition with a deadline that scales with the
// machine's load, a buffer safe for concurrent writers (a logger's or a
// process's output) and a one-call HTTP GET. Only tests import it.
package testkit

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/internal/testscale"
)

// maxPoll is the longest pause between two checks of a condition.
const maxPoll = 50 * time.Millisecond

// Poll checks cond until it holds (true) or timeout, stretched by
// testscale.Duration for a busy machine, has passed (false). It checks at
// once, then after pauses that double from a millisecond up to 50 ms, so a
// condition that comes quickly is seen quickly.
func Poll(timeout time.Duration, cond func() bool) bool {
	return pollFor(testscale.Duration(timeout), cond)
}

// pollFor is Poll with timeout already stretched.
func pollFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
	return true
}

// Eventually waits as Poll does for cond, and fails t naming what it waited
// for when cond does not hold within timeout (stretched by
// testscale.Duration). timeout is what the wait needs on an idle machine.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	timeout = testscale.Duration(timeout)
	if !pollFor(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout.Round(time.Millisecond), what)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers, such as a
// logger's or a background command's output. The zero value is ready.
type SyncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Get sends GET url with the Host header host and the Authorization header
// authorization (each unless empty) and returns the status and the body. A
// request that gets no answer fails t.
func Get(t testing.TB, url, host, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Bearer returns the Authorization header value for token ("Bearer
// <token>"), or "" for no token.
func Bearer(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}
