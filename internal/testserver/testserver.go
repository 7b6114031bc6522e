// Package testserver starts real servers (an S3-compatible object store, ...)
// on loopback ports for integration tests, and holds the small helpers they
// share: a free port, a wait-until-ready poll, and finding a binary.
//
// Servers that cannot be found or started make the test fail with the command
// that installs them: the tests that use them never skip.
package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TB is the part of testing.TB the Start functions use; *testing.T and
// *testing.B satisfy it. A local interface rather than testing.TB keeps the
// testing package out of programs that launch servers (dataplane bench).
type TB interface {
	Helper()
	Name() string
	TempDir() string
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another
// process may take it before the caller binds it; callers that start a server
// on it retry with a new port when the bind fails.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitReady polls ready every few milliseconds until it returns nil, exited is
// closed (the server process died), or timeout passes. It returns the last
// error of ready when it gives up.
func WaitReady(timeout time.Duration, exited <-chan struct{}, ready func() error) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before it was ready (last probe: %v)", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before it was ready (last probe: %v)", err)
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// DialReady is a ready probe for WaitReady: nil once addr accepts a TCP
// connection.
func DialReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// ErrBinaryNotFound means FindBinary found no executable.
var ErrBinaryNotFound = errors.New("binary not found")

// FindBinary locates an executable: the path in the environment variable env
// if set (it must exist), else name on PATH, else $GOPATH/bin/name (GOPATH
// from the environment, `go env GOPATH`, or ~/go).
func FindBinary(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w: %v", env, p, ErrBinaryNotFound, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var tried []string
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, name)
		tried = append(tried, p)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w (looked at $%s, PATH, %s)", name, ErrBinaryNotFound, env, strings.Join(tried, ", "))
}

func goBinDirs() []string {
	var dirs []string
	add := func(gopath string) {
		for _, p := range filepath.SplitList(gopath) {
			if p != "" {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, gb)
	}
	add(os.Getenv("GOPATH"))
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		add(strings.TrimSpace(string(out)))
	}
	if home, err := os.UserHomeDir(); err == nil {
		add(filepath.Join(home, "go"))
	}
	return dirs
}

// tailBuffer keeps the last max bytes written to it: a server's output, to
// quote when it fails.
type tailBuffer struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimSpace(b.buf))
}
