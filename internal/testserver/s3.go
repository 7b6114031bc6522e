package testserver

import (
	"fmt"
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

	ownsDir bool
	proc    process
}

// StartS3 starts an S3 server for the test in a t.TempDir() directory and
// stops it when the test ends. It fails the test, never skips it, if the
// server cannot be found or started.
func StartS3(t TB) *S3Server {
	t.Helper()
	s, err := launchS3Bin(t.TempDir(), false, "")
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
	return launchDir("S3 server", "dataplane-s3-", func(dir string) (*S3Server, error) {
		return launchS3Bin(dir, true, bin)
	})
}

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
		ownsDir:   ownsDir,
	}
	s.proc = process{name: "versitygw", bin: bin, timeout: 10 * time.Second, args: s.args, probe: s.probe}
	if err := s.proc.listen(func(addr string) { s.Endpoint = "http://" + addr }); err != nil {
		return nil, fmt.Errorf("S3 test server (%s): %w\nreinstall it with:\n\t%s", bin, err, VersityGWInstall)
	}
	return s, nil
}

// args is versitygw's command line: the posix backend in Dir.
func (s *S3Server) args() []string {
	return []string{
		"--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--port", s.proc.addr, "--keep-alive", "--quiet",
		"posix", s.Dir,
	}
}

// probe is ready once a signed ListBuckets succeeds (see s3Ready).
func (s *S3Server) probe() error {
	return s3Ready(s.Endpoint, s.Region, s.AccessKey, s.SecretKey)()
}

// Start (re)starts the server on its address with its directory, after Stop,
// and waits until it answers. Starting a running server does nothing.
func (s *S3Server) Start() error { return s.proc.start() }

// Stop kills the server (as a crash would), keeping its data, and waits until
// it is gone: requests fail until Start. Stopping a stopped server does
// nothing.
func (s *S3Server) Stop() error { return s.proc.stop() }

// Restart stops and starts the server.
func (s *S3Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Output returns the last few KB the running server printed.
func (s *S3Server) Output() string { return s.proc.output() }

// Close stops the server and, for LaunchS3's servers, removes its directory.
func (s *S3Server) Close() error { return s.proc.close(s.Dir, s.ownsDir) }
