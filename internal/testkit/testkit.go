// Package testkit holds the small helpers that tests of several packages
// share: a buffer safe for concurrent writers (a logger's or a process's
// output) and a one-call HTTP GET. Only tests import it.
package testkit

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
)

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
