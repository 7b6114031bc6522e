package testserver

import (
	"fmt"
	"net"
	"path/filepath"
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
	Server

	// RestartOnCrash, when set, restarts the server (on its address, with
	// its data) whenever it exits without Stop. dynalite 4.0.0 dies of an
	// uncaught ECONNRESET ("Error: aborted") when a connection closes
	// under a request it is still reading, which long fault-injection runs
	// provoke; real DynamoDB has no such failure, so those runs restart it
	// and count the crashes (Crashes) as outages.
	RestartOnCrash atomic.Bool
}

// StartDynamo starts a DynamoDB server for the test, storing its tables in a
// t.TempDir() directory, and kills it when the test ends. It fails the test,
// never skips it, when the server cannot be found or started.
func StartDynamo(t TB) *DynamoServer {
	t.Helper()
	return startFor(t, func(dir string) (*DynamoServer, error) { return dynLaunchBin(dir, false, "") })
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
	return launchDir("DynamoDB server", "dataplane-dynamo-", func(dir string) (*DynamoServer, error) {
		return dynLaunchBin(dir, true, bin)
	})
}

func dynLaunchBin(dir string, ownsDir bool, bin string) (*DynamoServer, error) {
	if bin == "" {
		var err error
		if bin, err = FindBinary("dynalite", DynaliteEnv); err != nil {
			return nil, fmt.Errorf("DynamoDB test server: %v\ninstall it with:\n\t%s\nand set %s to node_modules/.bin/dynalite", err, DynaliteInstall, DynaliteEnv)
		}
	}
	s := &DynamoServer{Server: testServer(dir, ownsDir)}
	if err := s.launch(procSpec{
		name: "dynalite", bin: bin, timeout: 15 * time.Second,
		args: s.args, probe: s.dynProbe, restartOnCrash: s.RestartOnCrash.Load,
	}); err != nil {
		return nil, fmt.Errorf("DynamoDB test server (%s): %w\nreinstall it with:\n\t%s", bin, err, DynaliteInstall)
	}
	return s, nil
}

// args is dynalite's command line. --createTableMs 0: tables are ACTIVE at
// once (the default makes every CreateTable wait half a second).
func (s *DynamoServer) args() []string {
	host, port, _ := net.SplitHostPort(s.proc.addr) // listen made it
	return []string{
		"--host", host, "--port", port, "--path", filepath.Join(s.Dir, "db"),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0",
	}
}

// dynProbe is ready once a signed ListTables succeeds (see dynamoReady).
func (s *DynamoServer) dynProbe() error {
	return dynamoReady(s.Endpoint, s.Region, s.AccessKey, s.SecretKey)()
}

// Crashes returns how many times the server exited without Stop, and the
// output of the last one to do so.
func (s *DynamoServer) Crashes() (int, string) { return s.proc.crashCount() }
