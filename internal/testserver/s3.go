package testserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// VersityGWEnv names the environment variable that may hold the path of the
// versitygw binary.
const VersityGWEnv = "DATAPLANE_VERSITYGW"

// VersityGWInstall is the command that installs the S3 server the tests use.
const VersityGWInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// S3Server is a real S3-compatible server (versitygw with its posix backend)
// on a loopback port, storing objects in a directory of its own. Use
// path-style addressing against it.
type S3Server struct {
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// AccessKey and SecretKey are the credentials of its root account.
	AccessKey, SecretKey string
	// Region is the region the server signs for.
	Region string
	// Dir holds the buckets; it survives Stop and Start.
	Dir string

	bin     string
	addr    string
	ownsDir bool

	mu     sync.Mutex // guards cmd, exited, out
	cmd    *exec.Cmd
	exited chan struct{}
	out    *tailBuffer
}

// StartS3 starts an S3 server for the test in a t.TempDir() directory and
// stops it when the test ends. It fails the test, never skips it, if the
// server cannot be found or started.
func StartS3(t TB) *S3Server {
	t.Helper()
	s, err := launchS3(t.TempDir(), false)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// LaunchS3 starts an S3 server in a new temporary directory, for a TestMain
// that shares one server across a package's tests (fresh bucket per test).
// Close stops it and removes the directory. The error names the install
// command when the binary is missing.
func LaunchS3() (*S3Server, error) { return LaunchS3Binary("") }

// LaunchS3Binary is LaunchS3 with the versitygw binary at bin; an empty bin
// is looked up as LaunchS3 does. For programs (dataplane bench) that take
// the binary's path as a flag.
func LaunchS3Binary(bin string) (*S3Server, error) {
	dir, err := os.MkdirTemp("", "dataplane-s3-")
	if err != nil {
		return nil, fmt.Errorf("start S3 server: %w", err)
	}
	s, err := launchS3Bin(dir, true, bin)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func launchS3(dir string, ownsDir bool) (*S3Server, error) { return launchS3Bin(dir, ownsDir, "") }

func launchS3Bin(dir string, ownsDir bool, bin string) (*S3Server, error) {
	if bin == "" {
		var err error
		if bin, err = FindBinary("versitygw", VersityGWEnv); err != nil {
			return nil, fmt.Errorf("S3 test server: %v\ninstall it with:\n\t%s\nor set %s to its path", err, VersityGWInstall, VersityGWEnv)
		}
	}
	s := &S3Server{
		AccessKey: "dataplane-test",
		SecretKey: "dataplane-test-secret",
		Region:    "us-east-1",
		Dir:       dir,
		bin:       bin,
		ownsDir:   ownsDir,
	}
	// The free port may be taken between FreePort and the server's bind:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		s.addr = "127.0.0.1:" + strconv.Itoa(port)
		s.Endpoint = "http://" + s.addr
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("S3 test server (%s): %w\nreinstall it with:\n\t%s", bin, lastErr, VersityGWInstall)
}

// Start (re)starts the server on its address with its directory, after Stop,
// and waits until it answers. Starting a running server does nothing.
func (s *S3Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	out := &tailBuffer{max: 8 << 10}
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", s.addr, "--keep-alive", "--quiet",
		"posix", s.Dir)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	if err := WaitReady(10*time.Second, exited, s.probe); err != nil {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("versitygw on %s: %w; output:\n%s", s.addr, err, out)
	}
	s.cmd, s.exited, s.out = cmd, exited, out
	return nil
}

// probe is ready once a signed ListBuckets succeeds (see s3Ready).
func (s *S3Server) probe() error {
	return s3Ready(s.Endpoint, s.Region, s.AccessKey, s.SecretKey)()
}

// Stop kills the server (as a crash would), keeping its data, and waits until
// it is gone: requests fail until Start. Stopping a stopped server does
// nothing.
func (s *S3Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	err := s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop versitygw on %s: %w", s.addr, err)
	}
	return nil
}

// Restart stops and starts the server.
func (s *S3Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Output returns the last few KB the running server printed.
func (s *S3Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Close stops the server and, for LaunchS3's servers, removes its directory.
func (s *S3Server) Close() error {
	err := s.Stop()
	if s.ownsDir {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}
