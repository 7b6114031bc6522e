package dir_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/record"
)

func TestConformance(t *testing.T) {
	origintest.Run(t, origintest.Harness{
		New: func(t *testing.T) origin.Store {
			s, err := dir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Corrupt: func(t *testing.T, s origin.Store, ns, key string) {
			if err := os.WriteFile(s.(*dir.Store).RecordPath(ns, key), []byte("DR\x01garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestOpenErrors(t *testing.T) {
	if _, err := dir.Open(""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Open(f); err == nil || !strings.Contains(err.Error(), f) {
		t.Fatalf("Open on a regular file: %v, want an error naming it", err)
	}
}

// The helper process: when DIRSTORE_HELPER is set, the test binary becomes a
// writer hammering one key with CAS increments in the given directory.
func TestMain(m *testing.M) {
	if root := os.Getenv("DIRSTORE_HELPER"); root != "" {
		os.Exit(helper(root, os.Getenv("DIRSTORE_ID"), os.Getenv("DIRSTORE_N")))
	}
	os.Exit(m.Run())
}

// helper performs n successful CAS increments of cfg/counter (the value is
// the count as text) and exits 0, or exits non-zero on any unexpected error.
func helper(root, id, nStr string) int {
	n, _ := strconv.Atoi(nStr)
	s, err := dir.Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	for done := 0; done < n; {
		cur, err := s.Get(ctx, "cfg", "counter", 0)
		var prev record.Version
		count := 0
		switch {
		case err == nil:
			prev = cur.Version
			count, _ = strconv.Atoi(string(cur.Value))
		case errors.Is(err, origin.ErrNotFound):
		default:
			fmt.Fprintln(os.Stderr, "helper", id, err)
			return 3
		}
		next := record.Record{Namespace: "cfg", Key: "counter", Value: []byte(strconv.Itoa(count + 1)), Version: prev + 1}
		err = s.CompareAndSwap(ctx, next, prev)
		if errors.Is(err, origin.ErrConflict) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper", id, err)
			return 4
		}
		done++
	}
	return 0
}

func helperCmd(t *testing.T, root string, id, n int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DIRSTORE_HELPER="+root, fmt.Sprint("DIRSTORE_ID=", id), fmt.Sprint("DIRSTORE_N=", n))
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCASAcrossProcesses: four processes increment one counter by CAS; no
// increment may be lost, which holds only if CAS is atomic across processes.
func TestCASAcrossProcesses(t *testing.T) {
	root := t.TempDir()
	const procs, each = 4, 50
	var cmds []*exec.Cmd
	for i := 0; i < procs; i++ {
		c := helperCmd(t, root, i, each)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer process failed: %v", err)
		}
	}
	s, _ := dir.Open(root)
	got, err := s.Get(context.Background(), "cfg", "counter", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != strconv.Itoa(procs*each) || got.Version != procs*each {
		t.Fatalf("counter = %s@%d, want %d: increments lost, CAS not atomic across processes", got.Value, got.Version, procs*each)
	}
}

// TestCrashMidWrite kills writer processes at random moments; whatever was
// on disk must decode: old or new record, never a torn one.
func TestCrashMidWrite(t *testing.T) {
	root := t.TempDir()
	for round := 0; round < 5; round++ {
		c := helperCmd(t, root, round, 1_000_000)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+round*15) * time.Millisecond) // let it get mid-stream; the kill moment is what varies
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
		s, err := dir.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(context.Background(), "cfg", "counter", 0)
		if err != nil && !errors.Is(err, origin.ErrNotFound) {
			t.Fatalf("round %d: after a crash the record reads as %v", round, err)
		}
		if err == nil && string(got.Value) != strconv.Itoa(int(got.Version)) {
			t.Fatalf("round %d: torn record: value %s at version %d", round, got.Value, got.Version)
		}
	}
}
