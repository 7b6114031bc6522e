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

// process is one server program run on a loopback address: the part of
// S3Server and DynamoServer that starts it, waits until it answers, kills
// it as a crash would, restarts it and keeps the end of what it printed.
// Each server says only its procSpec.
type process struct {
	procSpec
	addr string // host:port it listens on; set by listen

	mu      sync.Mutex // guards the fields below
	cmd     *exec.Cmd  // the running process; nil when stopped
	exited  chan struct{}
	out     *tailBuffer
	crashes int    // exits without stop
	lastOut string // output of the last crashed process
	closed  bool   // close was called: no more (re)starts
}

// procSpec is what a server says of its process: the program, its command
// line and how to tell that it answers.
type procSpec struct {
	name    string        // the program, at the start of errors ("versitygw")
	bin     string        // its executable
	timeout time.Duration // how long start waits for probe
	// args returns the command line after bin, for the process's addr.
	args func() []string
	// probe returns nil once the server answers.
	probe func() error
	// restartOnCrash, if set, says whether a process that exits without
	// stop is started again (on its address, with its data); otherwise a
	// crash leaves it stopped.
	restartOnCrash func() bool
}

// listen starts the process on a free loopback port, trying a few since a
// port free a moment ago may be taken before the server binds it; at returns
// the address chosen, for the server's own fields (an endpoint URL).
func (p *process) listen(at func(addr string)) error {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := FreePort()
		if err != nil {
			return err
		}
		p.addr = "127.0.0.1:" + strconv.Itoa(port)
		at(p.addr)
		if lastErr = p.start(); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// start (re)starts the process after stop and waits until probe answers.
// Starting a running process does nothing.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	if p.closed {
		return fmt.Errorf("%s: server closed", p.name)
	}
	out := &tailBuffer{max: 8 << 10}
	cmd := exec.Command(p.bin, p.args()...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	exited := make(chan struct{})
	go p.wait(cmd, out, exited)
	if err := WaitReady(p.timeout, exited, p.probe); err != nil {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s on %s: %w; output:\n%s", p.name, p.addr, err, out)
	}
	p.cmd, p.exited, p.out = cmd, exited, out
	return nil
}

// wait reaps cmd, closes exited, and counts an exit that stop did not ask
// for as a crash, restarting the process if restartOnCrash says so.
func (p *process) wait(cmd *exec.Cmd, out *tailBuffer, exited chan struct{}) {
	cmd.Wait()
	close(exited)
	p.mu.Lock()
	crashed := p.cmd == cmd // stop clears p.cmd before it lets go of mu
	if crashed {
		p.cmd = nil
		p.crashes++
		p.lastOut = out.String()
	}
	p.mu.Unlock()
	if crashed && p.restartOnCrash != nil && p.restartOnCrash() {
		// A failure leaves it stopped: requests fail, as in an outage.
		if err := p.start(); err != nil {
			p.mu.Lock()
			p.lastOut += "\nrestart failed: " + err.Error()
			p.mu.Unlock()
		}
	}
}

// stop kills the process, as a crash would, and waits until it is gone.
// Stopping a stopped process does nothing.
func (p *process) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	err := p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
	if err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s on %s: %w", p.name, p.addr, err)
	}
	return nil
}

// close stops the process for good and, if ownsDir, removes dir.
func (p *process) close(dir string, ownsDir bool) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.stop()
	if ownsDir {
		if rerr := os.RemoveAll(dir); err == nil {
			err = rerr
		}
	}
	return err
}

// output returns the last few KB the running (or last) process printed.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return ""
	}
	return p.out.String()
}

// crashCount returns how many times the process exited without stop, and
// the output of the last one to do so.
func (p *process) crashCount() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.crashes, p.lastOut
}

// launchDir makes a temporary directory named after pattern for a server
// that the caller stops with Close, runs launch in it, and removes it again
// if launch fails.
func launchDir[S any](what, pattern string, launch func(dir string) (S, error)) (S, error) {
	var zero S
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return zero, fmt.Errorf("start %s: %w", what, err)
	}
	s, err := launch(dir)
	if err != nil {
		os.RemoveAll(dir)
		return zero, err
	}
	return s, nil
}

// Server is what S3Server and DynamoServer share: where the server answers,
// the credentials its clients sign with, its directory, and the process
// behind it.
type Server struct {
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// Region is the region clients sign for.
	Region string
	// AccessKey and SecretKey are the credentials clients sign with.
	AccessKey, SecretKey string
	// Dir holds the server's data; it survives Stop and Start.
	Dir string

	ownsDir bool // Close removes Dir
	proc    process
}

// testServer is a Server with the credentials of every test server, whose
// data lives in dir (removed by Close if ownsDir).
func testServer(dir string, ownsDir bool) Server {
	return Server{
		Region:    "us-east-1",
		AccessKey: "dataplane-test",
		SecretKey: "dataplane-test-secret",
		Dir:       dir,
		ownsDir:   ownsDir,
	}
}

// launch starts the process of spec on a free port and sets Endpoint.
func (s *Server) launch(spec procSpec) error {
	s.proc.procSpec = spec
	return s.proc.listen(func(addr string) { s.Endpoint = "http://" + addr })
}

// Start (re)starts the server on its address with its directory, after Stop,
// and waits until it answers. Starting a running server does nothing.
func (s *Server) Start() error { return s.proc.start() }

// Stop kills the server (as a crash would), keeping its data, and waits until
// it is gone: requests fail ("connection refused") until Start. Stopping a
// stopped server does nothing.
func (s *Server) Stop() error { return s.proc.stop() }

// Restart stops and starts the server.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Output returns the last few KB the running server printed.
func (s *Server) Output() string { return s.proc.output() }

// Close stops the server for good and, for the servers of the Launch
// functions, removes its directory.
func (s *Server) Close() error { return s.proc.close(s.Dir, s.ownsDir) }

// startFor launches a server for the test in a t.TempDir() directory with
// launch and closes it when the test ends. It fails the test, never skips
// it, when the server cannot be found or started.
func startFor[S interface{ Close() error }](t TB, launch func(dir string) (S, error)) S {
	t.Helper()
	s, err := launch(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
