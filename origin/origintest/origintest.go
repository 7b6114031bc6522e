// Package origintest is the conformance suite every origin.Store passes. Each
// store's own test calls Run against a real backend (a directory, a real
// S3-compatible server, a real DynamoDB-compatible server, real cache nodes).
package origintest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Harness tells the suite how to make and damage a store.
type Harness struct {
	// New returns an empty store, isolated from every other call's (a fresh
	// bucket, table, directory or prefix). Cleanup is the harness's job
	// (t.Cleanup).
	New func(t *testing.T) origin.Store
	// Corrupt overwrites the stored object of ns/key with garbage bytes,
	// behind the store's back. It is required: the suite fails without it,
	// because every store must show it survives corruption.
	Corrupt func(t *testing.T, s origin.Store, ns, key string)
	// Writers is how many goroutines race in the CAS test; default 20.
	Writers int
}

// Run runs the whole suite as subtests of t.
func Run(t *testing.T, h Harness) {
	if h.Writers == 0 {
		h.Writers = 20
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"NotModified", testNotModified},
		{"CASConflict", testCASConflict},
		{"CASRace", testCASRace},
		{"Tombstone", testTombstone},
		{"OddKeys", testOddKeys},
		{"ValueSizes", testValueSizes},
		{"BadInput", testBadInput},
		{"ChangeLog", testChangeLog},
		{"TrimLog", testTrimLog},
		{"Snapshot", testSnapshot},
		{"SnapshotParts", testSnapshotParts},
		{"Corrupt", testCorrupt},
		{"Publish", testPublish},
		{"VersionCollision", testVersionCollision},
		{"ContextCancelled", testContextCancelled},
		{"Pending", testPending},
		{"Seals", testSeals},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func rec(ns, key, val string, v record.Version) record.Record {
	return record.Record{Namespace: ns, Key: key, Value: []byte(val), Version: v}
}

func mustCAS(t *testing.T, s origin.Store, r record.Record, prev record.Version) {
	t.Helper()
	if err := s.CompareAndSwap(ctx(t), r, prev); err != nil {
		t.Fatalf("CompareAndSwap(%s/%s@%s, prev %s): %v", r.Namespace, r.Key, r.Version, prev, err)
	}
}

func mustGet(t *testing.T, s origin.Store, ns, key string) record.Record {
	t.Helper()
	r, err := s.Get(ctx(t), ns, key, 0)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", ns, key, err)
	}
	return r
}

func equal(a, b record.Record) bool {
	return a.Namespace == b.Namespace && a.Key == b.Key && a.Version == b.Version &&
		a.Tombstone == b.Tombstone && bytes.Equal(a.Value, b.Value)
}

func testGetMissing(t *testing.T, h Harness) {
	s := h.New(t)
	if _, err := s.Get(ctx(t), "routes", "nope.example.com", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("Get missing: got %v, want ErrNotFound", err)
	}
	if _, err := s.GetSnapshot(ctx(t), "routes"); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("GetSnapshot missing: got %v, want ErrNotFound", err)
	}
	got, err := s.ReadLog(ctx(t), 0, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("ReadLog on empty store: %v, %v; want no changes", got, err)
	}
}

func testPutGet(t *testing.T, h Harness) {
	s := h.New(t)
	r1 := rec("routes", "api.example.com", `{"upstream":"http://10.0.0.1"}`, 100)
	mustCAS(t, s, r1, 0)
	if got := mustGet(t, s, "routes", "api.example.com"); !equal(got, r1) {
		t.Fatalf("Get = %+v, want %+v", got, r1)
	}
	r2 := rec("routes", "api.example.com", `{"upstream":"http://10.0.0.2"}`, 200)
	mustCAS(t, s, r2, 100)
	if got := mustGet(t, s, "routes", "api.example.com"); !equal(got, r2) {
		t.Fatalf("Get after update = %+v, want %+v", got, r2)
	}
	// Same key in another namespace is another record.
	if _, err := s.Get(ctx(t), "keys", "api.example.com", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("namespaces leak: Get(keys/...) = %v, want ErrNotFound", err)
	}
}

func testNotModified(t *testing.T, h Harness) {
	s := h.New(t)
	mustCAS(t, s, rec("cfg", "k", "v1", 10), 0)
	for _, tc := range []struct {
		ifNewer record.Version
		want    error
	}{
		{0, nil}, {9, nil}, {10, origin.ErrNotModified}, {11, origin.ErrNotModified},
	} {
		// Twice each: stores that cache ETags must answer the same again.
		for i := 0; i < 2; i++ {
			got, err := s.Get(ctx(t), "cfg", "k", tc.ifNewer)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Get(ifNewer=%d) #%d: err %v, want %v", tc.ifNewer, i, err, tc.want)
			}
			if tc.want == nil && got.Version != 10 {
				t.Fatalf("Get(ifNewer=%d): version %s, want 10", tc.ifNewer, got.Version)
			}
		}
	}
	mustCAS(t, s, rec("cfg", "k", "v2", 20), 10)
	got, err := s.Get(ctx(t), "cfg", "k", 10)
	if err != nil || got.Version != 20 || string(got.Value) != "v2" {
		t.Fatalf("Get(ifNewer=10) after update: %+v, %v; want v2@20", got, err)
	}
}

func testCASConflict(t *testing.T, h Harness) {
	s := h.New(t)
	mustCAS(t, s, rec("cfg", "k", "v1", 10), 0)
	for _, prev := range []record.Version{0, 5, 11} {
		err := s.CompareAndSwap(ctx(t), rec("cfg", "k", "bad", 30), prev)
		if !errors.Is(err, origin.ErrConflict) {
			t.Fatalf("CAS with prev %d over version 10: %v, want ErrConflict", prev, err)
		}
	}
	if got := mustGet(t, s, "cfg", "k"); string(got.Value) != "v1" || got.Version != 10 {
		t.Fatalf("a failed CAS changed the record: %+v", got)
	}
	err := s.CompareAndSwap(ctx(t), rec("cfg", "new", "x", 30), 7)
	if !errors.Is(err, origin.ErrConflict) {
		t.Fatalf("CAS with prev 7 on a missing key: %v, want ErrConflict", err)
	}
	if _, err := s.Get(ctx(t), "cfg", "new", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("failed CAS created a key: %v", err)
	}
}

func testCASRace(t *testing.T, h Harness) {
	s := h.New(t)
	mustCAS(t, s, rec("cfg", "race", "base", 1), 0)
	for _, prev := range []record.Version{0, 1} { // create race and update race
		key := "race"
		if prev == 0 {
			key = "race-create"
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, h.Writers)
		for i := 0; i < h.Writers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				r := rec("cfg", key, fmt.Sprintf("writer-%d", i), record.Version(100+i))
				err := s.CompareAndSwap(context.Background(), r, prev)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, origin.ErrConflict):
				default:
					errs <- err
				}
			}(i)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("racing CAS: unexpected error %v", err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("%d racing writers on %q (prev %d): %d won, want exactly 1", h.Writers, key, prev, n)
		}
		got := mustGet(t, s, "cfg", key)
		if want := fmt.Sprintf("writer-%d", got.Version-100); string(got.Value) != want {
			t.Fatalf("winner's value %q does not match its version %s (torn write)", got.Value, got.Version)
		}
	}
}

func testTombstone(t *testing.T, h Harness) {
	s := h.New(t)
	mustCAS(t, s, rec("keys", "ks1/abc", "v", 10), 0)
	del := record.Record{Namespace: "keys", Key: "ks1/abc", Version: 20, Tombstone: true}
	mustCAS(t, s, del, 10)
	got := mustGet(t, s, "keys", "ks1/abc")
	if !got.Tombstone || got.Version != 20 || len(got.Value) != 0 {
		t.Fatalf("after delete Get = %+v, want tombstone@20", got)
	}
	// A late write of an older version cannot resurrect the key.
	if err := s.CompareAndSwap(ctx(t), rec("keys", "ks1/abc", "old", 15), 10); !errors.Is(err, origin.ErrConflict) {
		t.Fatalf("older write over a tombstone: %v, want ErrConflict", err)
	}
	if _, err := origin.Publish(ctx(t), s, rec("keys", "ks1/abc", "old", 15)); !errors.Is(err, origin.ErrStale) {
		t.Fatalf("Publish older over a tombstone: %v, want ErrStale", err)
	}
	// A newer write brings it back on purpose.
	mustCAS(t, s, rec("keys", "ks1/abc", "again", 30), 20)
	if got := mustGet(t, s, "keys", "ks1/abc"); got.Tombstone || string(got.Value) != "again" {
		t.Fatalf("rewrite after delete = %+v", got)
	}
}

func testOddKeys(t *testing.T, h Harness) {
	s := h.New(t)
	keys := []string{
		"a/b/c", "/leading", "trailing/", "double//slash", ".", "..", "../escape", "a/../b",
		"dots.in.name", "ünïcødé/日本語", "emoji🙂", "space in key", "percent%2Fencoded",
		"question?mark&amp=1#frag", "plus+sign", "back\\slash", "~tilde", "x", strings.Repeat("k", record.MaxKeyLen),
		strings.Repeat("日", record.MaxKeyLen/3), "UPPER", "upper",
	}
	for i, k := range keys {
		mustCAS(t, s, rec("odd", k, fmt.Sprintf("v%d", i), record.Version(i+1)), 0)
	}
	for i, k := range keys {
		got := mustGet(t, s, "odd", k)
		if got.Key != k || string(got.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("key %q read back as %q = %q", k, got.Key, got.Value)
		}
	}
	for i, k := range keys {
		if err := s.AppendLog(ctx(t), record.Change{Namespace: "odd", Key: k, Version: record.Version(i + 1)}); err != nil {
			t.Fatalf("AppendLog(%q): %v", k, err)
		}
	}
	log, err := s.ReadLog(ctx(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(keys) {
		t.Fatalf("ReadLog: %d changes, want %d", len(log), len(keys))
	}
	for i, c := range log {
		if c.Key != keys[i] {
			t.Fatalf("log entry %d: key %q, want %q", i, c.Key, keys[i])
		}
	}
}

func testValueSizes(t *testing.T, h Harness) {
	s := h.New(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), record.MaxValueSize/16)
	for i, v := range [][]byte{nil, {0}, big} {
		key := fmt.Sprintf("size-%d", i)
		r := record.Record{Namespace: "blobs", Key: key, Value: v, Version: 5}
		mustCAS(t, s, r, 0)
		got := mustGet(t, s, "blobs", key)
		if !bytes.Equal(got.Value, v) {
			t.Fatalf("%d-byte value read back as %d bytes", len(v), len(got.Value))
		}
	}
	tooBig := record.Record{Namespace: "blobs", Key: "too-big", Value: make([]byte, record.MaxValueSize+1), Version: 5}
	if err := s.CompareAndSwap(ctx(t), tooBig, 0); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("oversized value: %v, want record.ErrInvalid", err)
	}
	if _, err := s.Get(ctx(t), "blobs", "too-big", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("rejected oversized value left something behind: %v", err)
	}
}

func testBadInput(t *testing.T, h Harness) {
	s := h.New(t)
	for _, tc := range []struct {
		name string
		r    record.Record
	}{
		{"empty key", rec("cfg", "", "v", 1)},
		{"empty namespace", rec("", "k", "v", 1)},
		{"bad namespace", rec("Bad/NS", "k", "v", 1)},
		{"key too long", rec("cfg", strings.Repeat("k", record.MaxKeyLen+1), "v", 1)},
		{"control char", rec("cfg", "a\nb", "v", 1)},
		{"invalid utf8", rec("cfg", "\xff\xfe", "v", 1)},
		{"zero version", rec("cfg", "k", "v", 0)},
		{"tombstone with value", record.Record{Namespace: "cfg", Key: "k", Value: []byte("x"), Version: 1, Tombstone: true}},
	} {
		err := s.CompareAndSwap(ctx(t), tc.r, 0)
		if !errors.Is(err, record.ErrInvalid) {
			t.Errorf("%s: CAS err %v, want record.ErrInvalid", tc.name, err)
		}
	}
	if err := s.CompareAndSwap(ctx(t), rec("cfg", "k", "v", 5), 5); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("version not above prev: %v, want record.ErrInvalid", err)
	}
	if _, err := s.Get(ctx(t), "cfg", "", 0); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("Get empty key: %v, want record.ErrInvalid", err)
	}
	if err := s.AppendLog(ctx(t), record.Change{Namespace: "cfg", Key: "", Version: 1}); !errors.Is(err, record.ErrInvalid) {
		t.Errorf("AppendLog empty key: %v, want record.ErrInvalid", err)
	}
	if _, err := s.Get(ctx(t), "cfg", "k", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Errorf("rejected writes left a record behind: %v", err)
	}
}

func testChangeLog(t *testing.T, h Harness) {
	s := h.New(t)
	// Appended out of order, with a duplicate; read back in version order.
	in := []record.Change{
		{Namespace: "routes", Key: "b", Version: 30},
		{Namespace: "routes", Key: "a", Version: 10},
		{Namespace: "keys", Key: "ks/1", Version: 20, Tombstone: true},
		{Namespace: "routes", Key: "a", Version: 10},
		{Namespace: "routes", Key: "c", Version: 40},
	}
	for _, c := range in {
		if err := s.AppendLog(ctx(t), c); err != nil {
			t.Fatalf("AppendLog(%+v): %v", c, err)
		}
	}
	all, err := s.ReadLog(ctx(t), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []record.Version{10, 20, 30, 40}
	if len(all) != len(want) {
		t.Fatalf("ReadLog(0) = %+v, want versions %v (duplicates collapsed)", all, want)
	}
	for i, c := range all {
		if c.Version != want[i] {
			t.Fatalf("ReadLog(0)[%d] = %+v, want version %d", i, c, want[i])
		}
	}
	if !all[1].Tombstone || all[1].Namespace != "keys" || all[1].Key != "ks/1" {
		t.Fatalf("tombstone change read back as %+v", all[1])
	}
	after, err := s.ReadLog(ctx(t), 20, 100)
	if err != nil || len(after) != 2 || after[0].Version != 30 {
		t.Fatalf("ReadLog(20) = %+v, %v; want versions 30, 40", after, err)
	}
	page, err := s.ReadLog(ctx(t), 0, 2)
	if err != nil || len(page) != 2 || page[1].Version != 20 {
		t.Fatalf("ReadLog(0, limit 2) = %+v, %v; want versions 10, 20", page, err)
	}
	none, err := s.ReadLog(ctx(t), 40, 100)
	if err != nil || len(none) != 0 {
		t.Fatalf("ReadLog(40) = %+v, %v; want nothing", none, err)
	}
}

func testTrimLog(t *testing.T, h Harness) {
	s := h.New(t)
	for v := record.Version(1); v <= 5; v++ {
		if err := s.AppendLog(ctx(t), record.Change{Namespace: "cfg", Key: fmt.Sprint("k", v), Version: v * 10}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TrimLog(ctx(t), 30); err != nil {
		t.Fatalf("TrimLog: %v", err)
	}
	if _, err := s.ReadLog(ctx(t), 5, 100); !errors.Is(err, origin.ErrLogTruncated) {
		t.Fatalf("ReadLog before horizon: %v, want ErrLogTruncated", err)
	}
	got, err := s.ReadLog(ctx(t), 29, 100)
	if err != nil || len(got) != 3 || got[0].Version != 30 {
		t.Fatalf("ReadLog(29) after trim = %+v, %v; want 30, 40, 50", got, err)
	}
}

func testSnapshot(t *testing.T, h Harness) {
	s := h.New(t)
	snap := record.Snapshot{Namespace: "routes", Version: 99, Records: []record.Record{
		rec("routes", "b.example.com", "B", 20),
		rec("routes", "a.example.com", "A", 10),
		{Namespace: "routes", Key: "gone.example.com", Version: 30, Tombstone: true},
	}}
	if err := s.PutSnapshot(ctx(t), snap); err != nil {
		t.Fatalf("PutSnapshot: %v", err)
	}
	got, err := s.GetSnapshot(ctx(t), "routes")
	if err != nil {
		t.Fatalf("GetSnapshot: %v", err)
	}
	if got.Version != 99 || len(got.Records) != 3 || got.Records[0].Key != "a.example.com" || !got.Records[2].Tombstone {
		t.Fatalf("GetSnapshot = %+v", got)
	}
	snap2 := record.Snapshot{Namespace: "routes", Version: 120, Records: []record.Record{rec("routes", "c", "C", 120)}}
	if err := s.PutSnapshot(ctx(t), snap2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSnapshot(ctx(t), "routes"); err != nil || got.Version != 120 || len(got.Records) != 1 {
		t.Fatalf("snapshot not replaced: %+v, %v", got, err)
	}
	empty := record.Snapshot{Namespace: "empty", Version: 1}
	if err := s.PutSnapshot(ctx(t), empty); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSnapshot(ctx(t), "empty"); err != nil || len(got.Records) != 0 {
		t.Fatalf("empty snapshot: %+v, %v", got, err)
	}
	bad := record.Snapshot{Namespace: "routes", Records: []record.Record{rec("keys", "x", "y", 1)}}
	if err := s.PutSnapshot(ctx(t), bad); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("snapshot with a foreign record: %v, want ErrInvalid", err)
	}
}

func testCorrupt(t *testing.T, h Harness) {
	if h.Corrupt == nil {
		t.Fatal("harness has no Corrupt hook: every store must show it survives a corrupt object")
	}
	s := h.New(t)
	mustCAS(t, s, rec("routes", "torn-object", "v", 10), 0)
	mustCAS(t, s, rec("routes", "good", "v", 10), 0)
	h.Corrupt(t, s, "routes", "torn-object")
	_, err := s.Get(ctx(t), "routes", "torn-object", 0)
	if !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Get of a corrupt object: %v, want record.ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), "torn-object") {
		t.Fatalf("corrupt-object error %q does not name the key", err)
	}
	if got := mustGet(t, s, "routes", "good"); string(got.Value) != "v" {
		t.Fatalf("a corrupt neighbour damaged another key: %+v", got)
	}
}

func testPublish(t *testing.T, h Harness) {
	s := h.New(t)
	r := rec("routes", "p.example.com", "v1", 100)
	written, err := origin.Publish(ctx(t), s, r)
	if err != nil || !written {
		t.Fatalf("Publish new: %v, %v", written, err)
	}
	written, err = origin.Publish(ctx(t), s, r)
	if err != nil || written {
		t.Fatalf("Publish same version again: written=%v err=%v, want idempotent no-op", written, err)
	}
	if _, err := origin.Publish(ctx(t), s, rec("routes", "p.example.com", "old", 50)); !errors.Is(err, origin.ErrStale) {
		t.Fatalf("Publish older: %v, want ErrStale", err)
	}
	log, err := s.ReadLog(ctx(t), 0, 10)
	if err != nil || len(log) != 1 || log[0].Version != 100 {
		t.Fatalf("log after publishes: %+v, %v; want one change @100", log, err)
	}
}

// testVersionCollision provokes what two publishers whose clocks hand out
// the same version do: both publish different content under one version of
// one key. Exactly one lands; every other gets origin.ErrVersionTaken (an
// origin.ErrStale) and leaves no trace, neither in the record nor in the
// log; no compare-and-swap stores other content under a version the key
// already holds.
func testVersionCollision(t *testing.T, h Harness) {
	s := h.New(t)
	// One after the other: what the losing publisher meets on its retry.
	mustCAS(t, s, rec("routes", "c.example.com", "winner", 100), 0)
	for _, loser := range []record.Record{
		rec("routes", "c.example.com", "loser", 100),
		{Namespace: "routes", Key: "c.example.com", Version: 100, Tombstone: true},
	} {
		for _, prev := range []record.Version{0, 50} {
			if err := s.CompareAndSwap(ctx(t), loser, prev); !errors.Is(err, origin.ErrConflict) {
				t.Fatalf("CompareAndSwap(other content @100, prev %d) over @100: %v, want ErrConflict", prev, err)
			}
		}
		written, err := origin.Publish(ctx(t), s, loser)
		if !errors.Is(err, origin.ErrVersionTaken) || !errors.Is(err, origin.ErrStale) || written {
			t.Fatalf("Publish(other content @100) over @100: written=%v err=%v, want ErrVersionTaken (an ErrStale)", written, err)
		}
	}
	if got := mustGet(t, s, "routes", "c.example.com"); string(got.Value) != "winner" || got.Tombstone {
		t.Fatalf("after colliding publishes Get = %+v, want the first write", got)
	}
	if log, err := s.ReadLog(ctx(t), 0, 10); err != nil || len(log) != 0 {
		t.Fatalf("log after refused publishes: %+v, %v; want nothing appended", log, err)
	}
	// The same content under the same version stays an idempotent republish.
	if written, err := origin.Publish(ctx(t), s, rec("routes", "c.example.com", "winner", 100)); err != nil || written {
		t.Fatalf("Publish(same content @100) again: written=%v err=%v, want an idempotent no-op", written, err)
	}

	// At once: every writer read the same previous version, so each sends
	// its compare-and-swap, and the losers find the winner's version on
	// their retry. Half write values, half deletes, so the log entry
	// shows whose change it is.
	mustCAS(t, s, rec("routes", "race.example.com", "base", 150), 0)
	const v = record.Version(200)
	var wg sync.WaitGroup
	start := make(chan struct{})
	type result struct {
		rec     record.Record
		written bool
		err     error
	}
	results := make([]result, h.Writers)
	for i := range h.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rec("routes", "race.example.com", fmt.Sprintf("writer-%d", i), v)
			if i%2 == 1 {
				r = record.Record{Namespace: "routes", Key: "race.example.com", Version: v, Tombstone: true}
			}
			<-start
			written, err := origin.Publish(context.Background(), s, r)
			results[i] = result{r, written, err}
		}()
	}
	close(start)
	wg.Wait()
	var won []record.Record
	for _, r := range results {
		switch {
		case r.err == nil && r.written:
			won = append(won, r.rec)
		case r.err == nil:
			// Not written but acknowledged: only an identical record may
			// be, and every writer's differs from the value writers'.
			if !r.rec.Tombstone {
				t.Errorf("Publish(%q @%s) acknowledged without writing: someone else's write taken for its own", r.rec.Value, v)
			} else {
				won = append(won, r.rec) // a tombstone identical to the winning one
			}
		case errors.Is(r.err, origin.ErrVersionTaken), errors.Is(r.err, origin.ErrConflict):
		default:
			t.Errorf("racing Publish: unexpected error %v", r.err)
		}
	}
	got := mustGet(t, s, "routes", "race.example.com")
	if got.Version != v {
		t.Fatalf("after the race Get = %+v, want @%s", got, v)
	}
	for _, w := range won {
		if w.Tombstone != got.Tombstone || !bytes.Equal(w.Value, got.Value) {
			t.Errorf("Publish of tombstone=%v %q @%s acknowledged, but the store holds tombstone=%v %q", w.Tombstone, w.Value, v, got.Tombstone, got.Value)
		}
	}
	if len(won) == 0 {
		t.Errorf("no racing Publish was acknowledged, but the store holds %+v", got)
	}
	log, err := s.ReadLog(ctx(t), 150, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range log {
		if c.Key == "race.example.com" && (c.Version != v || c.Tombstone != got.Tombstone) {
			t.Errorf("log holds %+v; the store holds tombstone=%v @%s", c, got.Tombstone, v)
		}
	}
}

func testContextCancelled(t *testing.T, h Harness) {
	s := h.New(t)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(c, "cfg", "k", 0); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with cancelled context: %v, want context.Canceled", err)
	}
	if err := s.CompareAndSwap(c, rec("cfg", "k", "v", 1), 0); err == nil {
		t.Fatalf("CAS with cancelled context succeeded")
	}
}

// testPending checks the optional origin.Pending capability: notes are
// listed until deleted, putting or deleting twice is harmless, and the
// tombstone flag and odd keys survive.
func testPending(t *testing.T, h Harness) {
	s := h.New(t)
	pend, ok := s.(origin.Pending)
	if !ok {
		t.Logf("%T keeps no pending notes", s)
		return
	}
	if got, err := pend.ListPending(ctx(t), 0); err != nil || len(got) != 0 {
		t.Fatalf("ListPending on an empty store = %v, %v; want none", got, err)
	}
	notes := []record.Change{
		{Namespace: "routes", Key: "a.example.com", Version: 10},
		{Namespace: "keys", Key: "ks/with space#hash", Version: 11, Tombstone: true},
		{Namespace: "routes", Key: "a.example.com", Version: 12},
		{Namespace: "keys", Key: "ks/signed", Version: 13, Seal: &record.Seal{KeyID: [8]byte{1}, Sig: [64]byte{2}}},
	}
	// A copy of a signed note is the same note, whatever its Seal pointer.
	// (Repair needs a note's namespace, key and version only: a store may
	// keep its Seal or not, so notes are compared without it.)
	id := func(c record.Change) record.ChangeID {
		c.Seal = nil
		return c.ID()
	}
	signedCopy := func() record.Change {
		c := notes[3]
		seal := *c.Seal
		c.Seal = &seal
		return c
	}
	for _, c := range append(notes, notes[0], signedCopy()) {
		if err := pend.PutPending(ctx(t), c); err != nil {
			t.Fatalf("PutPending(%+v): %v", c, err)
		}
	}
	list := func() map[record.ChangeID]bool {
		t.Helper()
		got, err := pend.ListPending(ctx(t), 0)
		if err != nil {
			t.Fatalf("ListPending: %v", err)
		}
		m := make(map[record.ChangeID]bool, len(got))
		for _, c := range got {
			if m[id(c)] {
				t.Fatalf("ListPending listed %+v twice", c)
			}
			m[id(c)] = true
		}
		return m
	}
	got := list()
	if len(got) != len(notes) {
		t.Fatalf("ListPending = %v, want %v", got, notes)
	}
	for _, c := range notes {
		if !got[id(c)] {
			t.Fatalf("ListPending = %v, missing %+v", got, c)
		}
	}
	if lim, err := pend.ListPending(ctx(t), 2); err != nil || len(lim) != 2 {
		t.Fatalf("ListPending(limit 2) = %v, %v; want 2 notes", lim, err)
	}
	for _, c := range []record.Change{notes[0], notes[0], {Namespace: "routes", Key: "never", Version: 9}, signedCopy()} {
		if err := pend.DeletePending(ctx(t), c); err != nil {
			t.Fatalf("DeletePending(%+v): %v", c, err)
		}
	}
	got = list()
	if len(got) != 2 || got[id(notes[0])] || !got[id(notes[1])] || !got[id(notes[2])] || got[id(notes[3])] {
		t.Fatalf("after deleting %+v and %+v, ListPending = %v", notes[0], notes[3], got)
	}
	if err := pend.PutPending(ctx(t), record.Change{Namespace: "routes", Key: "x"}); err == nil {
		t.Fatal("PutPending of version 0 succeeded")
	}
}

// testSeals: a record's publisher signature (record.Seal) survives the
// store untouched: on the record, on its change log entry and in a
// snapshot (issue 12). Stores do not check seals; nodes do.
func testSeals(t *testing.T, h Harness) {
	s := h.New(t)
	seal := func(b byte) *record.Seal {
		x := &record.Seal{}
		for i := range x.Sig {
			x.Sig[i] = b + byte(i)
		}
		x.KeyID[0], x.Digest[31] = b, b^0xff
		return x
	}
	put := rec("routes", "signed.example.com", "v", 100)
	put.Seal = seal(1)
	del := record.Record{Namespace: "routes", Key: "gone/é x", Version: 200, Tombstone: true, Seal: seal(2)}
	for _, r := range []record.Record{put, del} {
		if _, err := origin.Publish(ctx(t), s, r); err != nil {
			t.Fatalf("Publish(%s): %v", r.Key, err)
		}
		got, err := s.Get(ctx(t), r.Namespace, r.Key, 0)
		if err != nil || !reflect.DeepEqual(got.Seal, r.Seal) {
			t.Fatalf("Get(%s) = seal %+v, %v; want %+v", r.Key, got.Seal, err, r.Seal)
		}
	}
	log, err := s.ReadLog(ctx(t), 0, 10)
	if err != nil || len(log) != 2 {
		t.Fatalf("ReadLog = %+v, %v", log, err)
	}
	for i, want := range []record.Record{put, del} {
		if !reflect.DeepEqual(log[i].Seal, want.Seal) {
			t.Errorf("log entry %d seal = %+v, want %+v", i, log[i].Seal, want.Seal)
		}
	}
	if err := s.PutSnapshot(ctx(t), record.Snapshot{Namespace: "routes", Version: 200, Records: []record.Record{put, del}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.GetSnapshot(ctx(t), "routes")
	if err != nil || len(snap.Records) != 2 {
		t.Fatalf("GetSnapshot = %+v, %v", snap, err)
	}
	for _, r := range snap.Records {
		want := put.Seal
		if r.Key == del.Key {
			want = del.Seal
		}
		if !reflect.DeepEqual(r.Seal, want) {
			t.Errorf("snapshot record %s seal = %+v, want %+v", r.Key, r.Seal, want)
		}
	}
}
