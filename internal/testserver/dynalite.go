package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DynaliteEnv names the environment variable that may hold the path of the
// dynalite binary (scripts/test.sh sets it to
// .tools/npm/node_modules/.bin/dynalite).
const DynaliteEnv = "DATAPLANE_DYNALITE"

// DynaliteInstall is the command that installs the DynamoDB server the tests
// use.
const DynaliteInstall = "npm install dynalite@4.0.0"

// DynamoServer is a real DynamoDB-compatible server (dynalite) on a loopback
// port. It keeps its tables in a LevelDB directory of its own, so they
// survive Stop and Start: an outage, not a data loss. Any credentials are
// accepted; use the ones given here.
type DynamoServer struct {
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// Region is the region clients should sign for.
	Region string
	// AccessKey and SecretKey are static credentials for clients.
	AccessKey, SecretKey string
	// Dir holds the server's LevelDB store; it survives Stop and Start.
	Dir string

	bin     string
	addr    string
	ownsDir bool

	// RestartOnCrash, when set, restarts the server (on its address, with
	// its data) whenever it exits without Stop. dynalite 4.0.0 dies of an
	// uncaught ECONNRESET ("Error: aborted") when a connection closes
	// under a request it is still reading, which long fault-injection runs
	// provoke; real DynamoDB has no such failure, so those runs restart it
	// and count the crashes (Crashes) as outages.
	RestartOnCrash atomic.Bool

	mu      sync.Mutex // guards cmd, exited, out, crashes, lastOut
	cmd     *exec.Cmd
	exited  chan struct{}
	out     *dynOutput
	crashes int
	lastOut string // output of the last crashed process
	closed  bool   // Close was called: no more (re)starts
}

// StartDynamo starts a DynamoDB server for the test, storing its tables in a
// t.TempDir() directory, and kills it when the test ends. It fails the test,
// never skips it, when the server cannot be found or started.
func StartDynamo(t TB) *DynamoServer {
	t.Helper()
	s, err := dynLaunch(t.TempDir(), false)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// LaunchDynamo starts a DynamoDB server in a new temporary directory, for a
// package that shares one server across its tests (a fresh table per test):
// the caller stops it with Close, typically from TestMain. The error names
// the install command when the binary is missing.
func LaunchDynamo() (*DynamoServer, error) { return LaunchDynamoBinary("") }

// LaunchDynamoBinary is LaunchDynamo with the dynalite executable at bin; an
// empty bin is looked up as LaunchDynamo does. For programs (dataplane
// bench) that take the binary's path as a flag.
func LaunchDynamoBinary(bin string) (*DynamoServer, error) {
	dir, err := os.MkdirTemp("", "dataplane-dynamo-")
	if err != nil {
		return nil, fmt.Errorf("start DynamoDB server: %w", err)
	}
	s, err := dynLaunchBin(dir, true, bin)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func dynLaunch(dir string, ownsDir bool) (*DynamoServer, error) {
	return dynLaunchBin(dir, ownsDir, "")
}

func dynLaunchBin(dir string, ownsDir bool, bin string) (*DynamoServer, error) {
	if bin == "" {
		var err error
		if bin, err = FindBinary("dynalite", DynaliteEnv); err != nil {
			return nil, fmt.Errorf("DynamoDB test server: %v\ninstall it with:\n\t%s\nand set %s to node_modules/.bin/dynalite", err, DynaliteInstall, DynaliteEnv)
		}
	}
	s := &DynamoServer{
		Region:    "us-east-1",
		AccessKey: "dataplane-test",
		SecretKey: "dataplane-test-secret",
		Dir:       dir,
		bin:       bin,
		ownsDir:   ownsDir,
	}
	// The free port may be taken between FreePort and dynalite's bind: try
	// a few.
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
	return nil, fmt.Errorf("DynamoDB test server (%s): %w\nreinstall it with:\n\t%s", bin, lastErr, DynaliteInstall)
}

// Start (re)starts the server on its address with its directory, after Stop,
// and waits until it answers. Starting a running server does nothing.
func (s *DynamoServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	if s.closed {
		return errors.New("dynalite: server closed")
	}
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		return fmt.Errorf("dynalite address %q: %w", s.addr, err)
	}
	out := &dynOutput{max: 8 << 10}
	// --createTableMs 0: tables are ACTIVE at once (the default makes every
	// CreateTable wait half a second).
	cmd := exec.Command(s.bin,
		"--host", host, "--port", port, "--path", filepath.Join(s.Dir, "db"),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
		s.mu.Lock()
		crashed := s.cmd == cmd // Stop clears s.cmd before it lets go of mu
		if crashed {
			s.cmd = nil
			s.crashes++
			s.lastOut = out.String()
		}
		s.mu.Unlock()
		if crashed && s.RestartOnCrash.Load() {
			// A failure leaves it stopped: requests fail, as in an outage.
			if err := s.Start(); err != nil {
				s.mu.Lock()
				s.lastOut += "\nrestart failed: " + err.Error()
				s.mu.Unlock()
			}
		}
	}()
	if err := WaitReady(15*time.Second, exited, s.dynProbe); err != nil {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("dynalite on %s: %w; output:\n%s", s.addr, err, out)
	}
	s.cmd, s.exited, s.out = cmd, exited, out
	return nil
}

// dynProbe is ready once a signed ListTables succeeds (see dynamoReady).
func (s *DynamoServer) dynProbe() error {
	return dynamoReady(s.Endpoint, s.Region, s.AccessKey, s.SecretKey)()
}

// Stop kills the server (as a crash would), keeping its data, and waits until
// it is gone: requests fail with "connection refused" until Start. Stopping a
// stopped server does nothing.
func (s *DynamoServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	err := s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop dynalite on %s: %w", s.addr, err)
	}
	return nil
}

// Crashes returns how many times the server exited without Stop, and the
// output of the last one to do so.
func (s *DynamoServer) Crashes() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crashes, s.lastOut
}

// Output returns the last few KB the running server printed.
func (s *DynamoServer) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Close stops the server and, for LaunchDynamo's servers, removes its
// directory.
func (s *DynamoServer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.Stop()
	if s.ownsDir {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// dynOutput keeps the last max bytes the server printed, to quote when it
// fails.
type dynOutput struct {
	mu  sync.Mutex // guards buf
	buf []byte
	max int
}

func (b *dynOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *dynOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(bytes.TrimSpace(b.buf))
}
