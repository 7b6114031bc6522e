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
	Server
}

// StartS3 starts an S3 server for the test in a t.TempDir() directory and
// stops it when the test ends. It fails the test, never skips it, if the
// server cannot be found or started.
func StartS3(t TB) *S3Server {
	t.Helper()
	return startFor(t, func(dir string) (*S3Server, error) { return launchS3Bin(dir, false, "") })
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
	s := &S3Server{Server: testServer(dir, ownsDir)}
	if err := s.launch(procSpec{name: "versitygw", bin: bin, timeout: 10 * time.Second, args: s.args, probe: s.probe}); err != nil {
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
