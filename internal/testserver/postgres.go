package testserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinEnv names the environment variable that may hold the directory
// of the PostgreSQL server binaries (initdb, pg_ctl, postgres), e.g.
// /usr/lib/postgresql/15/bin.
const PostgresBinEnv = "DATAPLANE_PG_BIN"

// PostgresInstall is the command that installs the PostgreSQL server the
// tests use.
const PostgresInstall = "apt-get install postgresql"

// PostgresServer is a throwaway PostgreSQL cluster on a loopback port, in a
// directory of its own, with trust authentication for the user "postgres".
// When the tests run as root it runs as the "postgres" system user (or
// "nobody"), because PostgreSQL refuses to run as root.
type PostgresServer struct {
	// DSN connects to the "postgres" database as the superuser.
	DSN string
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the cluster (Dir/data), its log and its socket; it
	// survives Stop and Start.
	Dir string

	bin     string              // directory of initdb and pg_ctl
	cred    *syscall.Credential // who the server runs as; nil: as this process
	ownsDir bool

	mu      sync.Mutex // guards running
	running bool
}

// StartPostgres starts a PostgreSQL server for the test in a t.TempDir()
// directory and stops it when the test ends. It fails the test, never skips
// it, if the server cannot be found or started.
func StartPostgres(t TB) *PostgresServer {
	t.Helper()
	s, err := pgLaunch(t.TempDir(), false)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// LaunchPostgres starts a PostgreSQL server in a new temporary directory,
// for a TestMain that shares one server across a package's tests (a fresh
// database per test: CreateDatabase). Close stops it and removes the
// directory.
//
// A test process that dies without Close (a test timeout, a kill) leaves its
// server running; the next LaunchPostgres stops and removes such leftovers,
// recognised by the owner file naming a process that no longer exists.
func LaunchPostgres() (*PostgresServer, error) {
	pgSweep()
	dir, err := os.MkdirTemp("", pgSharedPrefix)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, pgOwnerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	s, err := pgLaunch(dir, true)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

const (
	// pgSharedPrefix names LaunchPostgres's directories.
	pgSharedPrefix = "dataplane-pg-"
	// pgOwnerFile holds the pid of the process that launched the server.
	pgOwnerFile = "owner.pid"
)

// pgSweep stops and removes the servers of LaunchPostgres callers that died
// without closing them.
func pgSweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pgSharedPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, pgOwnerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // owner alive (or unknowable): leave it
		}
		if bin, err := pgFindBin(); err == nil {
			s := &PostgresServer{Dir: dir, bin: bin}
			if os.Geteuid() == 0 {
				s.cred, _ = pgServerUser()
			}
			s.pgRun("pg_ctl", "-D", s.pgDataDir(), "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(dir)
	}
}

func pgLaunch(dir string, ownsDir bool) (*PostgresServer, error) {
	bin, err := pgFindBin()
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL test server: %v\ninstall it with:\n\t%s\nor set %s to the directory holding initdb and pg_ctl", err, PostgresInstall, PostgresBinEnv)
	}
	s := &PostgresServer{Dir: dir, bin: bin, ownsDir: ownsDir}
	if os.Geteuid() == 0 {
		if s.cred, err = pgServerUser(); err != nil {
			return nil, err
		}
		if err := pgPrepareDir(dir, s.cred); err != nil {
			return nil, err
		}
	}
	if out, err := s.pgRun("initdb", "-D", s.pgDataDir(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("PostgreSQL test server: initdb in %s: %v\n%s\n(install the server with: %s)", dir, err, out, PostgresInstall)
	}
	// The free port may be taken between FreePort and the server's bind:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if s.Port, err = FreePort(); err != nil {
			return nil, err
		}
		s.DSN = s.DatabaseDSN("postgres")
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("PostgreSQL test server (%s): %w", bin, lastErr)
}

// pgFindBin returns the directory holding initdb and pg_ctl: $DATAPLANE_PG_BIN,
// else the newest /usr/lib/postgresql/*/bin (Debian), else initdb's
// directory on PATH with symlinks resolved.
func pgFindBin() (string, error) {
	has := func(d string) bool {
		for _, name := range []string{"initdb", "pg_ctl"} {
			if st, err := os.Stat(filepath.Join(d, name)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(PostgresBinEnv); d != "" {
		if !has(d) {
			return "", fmt.Errorf("%s=%s: %w: no initdb and pg_ctl there", PostgresBinEnv, d, ErrBinaryNotFound)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { // by major version, newest first
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && has(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", fmt.Errorf("initdb: %w (looked at $%s, /usr/lib/postgresql/*/bin, PATH)", ErrBinaryNotFound, PostgresBinEnv)
}

// pgServerUser picks the unprivileged user a root test process runs the
// server as: "postgres" (the Debian package creates it), else "nobody".
func pgServerUser() (*syscall.Credential, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("user %s: odd uid %q or gid %q", name, u.Uid, u.Gid))
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("PostgreSQL refuses to run as root and no unprivileged user to run it as was found (%v); create one with: useradd --system postgres", errors.Join(errs...))
}

// pgPrepareDir gives dir to the server's user and lets that user reach it:
// the directories above it that the test framework made (t.TempDir's parent
// is private to root) become traversable, not readable.
func pgPrepareDir(dir string, cred *syscall.Credential) error {
	if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("PostgreSQL test server: give %s to uid %d: %w", dir, cred.Uid, err)
	}
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Dir(dir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("PostgreSQL test server: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("PostgreSQL test server: make %s traversable: %w", p, err)
			}
		}
	}
	return nil
}

func (s *PostgresServer) pgDataDir() string { return filepath.Join(s.Dir, "data") }

// LogPath is the server's log file.
func (s *PostgresServer) LogPath() string { return filepath.Join(s.Dir, "postgres.log") }

// DatabaseDSN returns the DSN of database name on this server.
func (s *PostgresServer) DatabaseDSN(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// pgRun runs one of the server's programs as the server's user and returns
// its combined output.
func (s *PostgresServer) pgRun(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir // the server's user may not be allowed into ours
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	// pg_ctl's server redirects its own output to the log file; WaitDelay
	// guards against anything holding our pipe open anyway.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Start (re)starts the server on its port with its data, after Stop, and
// waits until it accepts connections. Starting a running server does
// nothing.
func (s *PostgresServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	// The socket path must fit in a sockaddr_un (108 bytes); TCP is what
	// the tests use, so a deep directory just goes without a socket.
	sock := s.Dir
	if len(sock)+len("/.s.PGSQL.65535") >= 100 {
		sock = ""
	}
	// fsync=off is safe for tests: Stop is a crash of PostgreSQL, not of
	// the machine, and the kernel keeps what was written. Commits stay
	// synchronous, so that a commit survives Stop as it would in production.
	opts := fmt.Sprintf("-k '%s' -p %d -h 127.0.0.1 -c fsync=off -c full_page_writes=off", sock, s.Port)
	out, err := s.pgRun("pg_ctl", "-D", s.pgDataDir(), "-l", s.LogPath(), "-w", "-t", "60", "-o", opts, "start")
	if err != nil {
		s.pgRun("pg_ctl", "-D", s.pgDataDir(), "-m", "immediate", "-w", "stop") // in case it half started
		return fmt.Errorf("pg_ctl start on 127.0.0.1:%d: %v\n%s\nserver log:\n%s", s.Port, err, out, s.pgLogTail())
	}
	if err := WaitReady(30*time.Second, nil, DialReady(fmt.Sprintf("127.0.0.1:%d", s.Port))); err != nil {
		s.pgRun("pg_ctl", "-D", s.pgDataDir(), "-m", "immediate", "-w", "stop")
		return fmt.Errorf("PostgreSQL on 127.0.0.1:%d: %w\nserver log:\n%s", s.Port, err, s.pgLogTail())
	}
	s.running = true
	return nil
}

// Stop shuts the server down at once, as a crash would (pg_ctl -m
// immediate), keeping its data: connections break and new ones are refused
// until Start. Stopping a stopped server does nothing.
func (s *PostgresServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	out, err := s.pgRun("pg_ctl", "-D", s.pgDataDir(), "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop on 127.0.0.1:%d: %v\n%s", s.Port, err, out)
	}
	s.running = false
	return nil
}

// Restart stops and starts the server.
func (s *PostgresServer) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start()
}

// Close stops the server and, for LaunchPostgres's servers, removes its
// directory.
func (s *PostgresServer) Close() error {
	err := s.Stop()
	if s.ownsDir {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// CreateDatabase creates an empty database and returns its DSN.
func (s *PostgresServer) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.DatabaseDSN(name), nil
}

// NewDatabase creates a fresh database for the test, named after it, and
// returns its DSN; it fails the test if it cannot.
func (s *PostgresServer) NewDatabase(t TB) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r - 'A' + 'a'
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e9)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, s.pgLogTail())
	}
	return dsn
}

// pgLogTail returns the end of the server's log.
func (s *PostgresServer) pgLogTail() string {
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return strings.TrimSpace(string(b))
}
