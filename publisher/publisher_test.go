package publisher_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

func TestPutGetDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		ctx := testCtx(t)

		r1, err := e.pub.Put(ctx, "routes", "a.example.com", []byte(`{"upstream":"http://10.0.0.1"}`))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := e.pub.Put(ctx, "routes", "a.example.com", []byte(`{"upstream":"http://10.0.0.2"}`))
		if err != nil {
			t.Fatal(err)
		}
		if r2.Version <= r1.Version {
			t.Fatalf("second put got version %s, not above %s", r2.Version, r1.Version)
		}
		got, err := e.pub.Get(ctx, "routes", "a.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Value) != `{"upstream":"http://10.0.0.2"}` || got.Version != r2.Version || got.Tombstone {
			t.Fatalf("Get = %+v, want the second put", got)
		}
		del, err := e.pub.Delete(ctx, "routes", "a.example.com")
		if err != nil {
			t.Fatal(err)
		}
		got, err = e.pub.Get(ctx, "routes", "a.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if !got.Tombstone || got.Version != del.Version || del.Version <= r2.Version {
			t.Fatalf("after delete Get = %+v (delete version %s), want a tombstone above %s", got, del.Version, r2.Version)
		}
		if _, err := e.pub.Get(ctx, "routes", "never.example.com"); !errors.Is(err, origin.ErrNotFound) {
			t.Fatalf("Get of an absent key: %v, want ErrNotFound", err)
		}

		// One notification per write, in order, carrying the record.
		n := e.notify.records()
		if len(n) != 3 || n[0].Version != r1.Version || n[1].Version != r2.Version || n[2].Version != del.Version || !n[2].Tombstone {
			t.Fatalf("notifications = %+v, want the three writes in order", n)
		}
		// And one change log entry per write.
		if cs := logOf(t, e.store); len(cs) != 3 || cs[2].Version != del.Version || !cs[2].Tombstone {
			t.Fatalf("change log = %+v, want the three writes", cs)
		}
		if w := e.metric(t, "dataplane_publisher_writes_total"); w != 3 {
			t.Fatalf("writes_total = %v, want 3", w)
		}
	})
}

func TestPutRejectsInvalid(t *testing.T) {
	cases := []struct {
		name, ns, key string
		value         []byte
	}{
		{"empty namespace", "", "k", nil},
		{"bad namespace", "Routes!", "k", nil},
		{"empty key", "routes", "", nil},
		{"control character in key", "routes", "a\x01b", nil},
		{"long key", "routes", strings.Repeat("k", record.MaxKeyLen+1), nil},
		{"oversized value", "routes", "k", make([]byte, record.MaxValueSize+1)},
	}
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		for _, c := range cases {
			_, err := e.pub.Put(testCtx(t), c.ns, c.key, c.value)
			if !errors.Is(err, record.ErrInvalid) {
				t.Errorf("%s: Put error %v, want ErrInvalid", c.name, err)
			}
		}
		if cs := logOf(t, e.store); len(cs) != 0 {
			t.Fatalf("rejected writes reached the change log: %+v", cs)
		}
		if n := e.notify.records(); len(n) != 0 {
			t.Fatalf("rejected writes were notified: %+v", n)
		}
		if r := e.metric(t, "dataplane_publisher_rejected_total"); r != float64(len(cases)) {
			t.Fatalf("rejected_total = %v, want %d", r, len(cases))
		}
	})
}

func TestNotifierFailureDoesNotFailTheWrite(t *testing.T) {
	cases := []struct {
		name  string
		setup func(n *fakeNotifier)
	}{
		{"error", func(n *fakeNotifier) { n.fail = errors.New("gossip down") }},
		{"panic", func(n *fakeNotifier) { n.panic = true }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, backends[0].open(t), nil)
			c.setup(e.notify)
			rec, err := e.pub.Put(testCtx(t), "routes", "a", []byte(`1`))
			if err != nil {
				t.Fatalf("Put failed because the notifier did: %v", err)
			}
			got, err := e.pub.Get(testCtx(t), "routes", "a")
			if err != nil || got.Version != rec.Version {
				t.Fatalf("Get = %+v, %v; want the write stored", got, err)
			}
			if cs := logOf(t, e.store); len(cs) != 1 {
				t.Fatalf("change log = %+v, want the write (the backstop)", cs)
			}
			if v := e.metric(t, "dataplane_publisher_notify_errors_total"); v != 1 {
				t.Fatalf("notify_errors_total = %v, want 1", v)
			}
			if !strings.Contains(e.logs.String(), "notify failed") {
				t.Fatalf("the failure was not logged: %s", e.logs)
			}
		})
	}
}

func TestNilNotifierIsTTLOnly(t *testing.T) {
	e := newEnv(t, backends[1].open(t), func(c *publisher.Config) { c.Notifier = nil })
	if _, err := e.pub.Put(testCtx(t), "routes", "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if n := e.notify.records(); len(n) != 0 {
		t.Fatalf("notified without a Notifier: %+v", n)
	}
}

// TestPutVersion: the outbox sync brings its own versions and republishes
// after a crash; the same version again is a quiet success, an older one
// is ErrStale.
func TestPutVersion(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		ctx := testCtx(t)
		// A version the caller just took: one from the past is restamped
		// (TestPutVersionBackdated).
		rec := record.Record{Namespace: "routes", Key: "a", Value: []byte(`"v1"`), Version: record.MakeVersion(time.Now(), 0)}

		written, err := e.pub.PutVersion(ctx, rec)
		if err != nil || !written {
			t.Fatalf("first PutVersion = %v, %v; want written", written, err)
		}
		written, err = e.pub.PutVersion(ctx, rec)
		if err != nil || written {
			t.Fatalf("republish of the same version = %v, %v; want a no-op success", written, err)
		}
		older := rec
		older.Version--
		older.Value = []byte(`"v0"`)
		if _, err := e.pub.PutVersion(ctx, older); !errors.Is(err, origin.ErrStale) {
			t.Fatalf("older version: %v, want ErrStale", err)
		}
		got, _ := e.pub.Get(ctx, "routes", "a")
		if string(got.Value) != `"v1"` || got.Version != rec.Version {
			t.Fatalf("stored %+v, want v1 untouched", got)
		}
		if cs := logOf(t, e.store); len(cs) != 1 {
			t.Fatalf("change log = %+v, want one entry for one version", cs)
		}
		// The republish notifies again: the crash may have lost the first.
		if n := e.notify.records(); len(n) != 2 || n[0].Version != rec.Version || n[1].Version != rec.Version {
			t.Fatalf("notifications = %+v, want two of version %s", n, rec.Version)
		}
		// A later Put moves past a version brought from elsewhere.
		next, err := e.pub.Put(ctx, "routes", "a", []byte(`"v2"`))
		if err != nil || next.Version <= rec.Version {
			t.Fatalf("Put after PutVersion = %+v, %v; want a version above %s", next, err, rec.Version)
		}
	})
}

// TestPutOutrunsAClockAhead: a key written by a publisher whose clock is far
// ahead still takes a Put from ours, above that version.
func TestPutOutrunsAClockAhead(t *testing.T) {
	e := newEnv(t, backends[1].open(t), nil)
	ctx := testCtx(t)
	ahead := record.Version(^uint64(0) >> 2)
	if err := e.store.CompareAndSwap(ctx, record.Record{Namespace: "routes", Key: "a", Value: []byte(`0`), Version: ahead}, 0); err != nil {
		t.Fatal(err)
	}
	rec, err := e.pub.Put(ctx, "routes", "a", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version <= ahead {
		t.Fatalf("Put version %s not above the stored %s", rec.Version, ahead)
	}
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		edit func(*publisher.Config)
		want string
	}{
		{"snapshot interval", func(c *publisher.Config) { c.SnapshotInterval = -1 }, "SnapshotInterval"},
		{"retention", func(c *publisher.Config) { c.Timing.LogRetention = -1 }, "LogRetention"},
		{"namespace", func(c *publisher.Config) { c.Namespaces = []string{"Bad"} }, "Namespaces"},
		{"budget", func(c *publisher.Config) { c.Timing.PublishBudget = 0 }, "PublishBudget=0s must be positive"},
		{"settle below budget", func(c *publisher.Config) { c.Timing.LogSettle = c.Timing.PublishBudget }, "LogSettle=1s < PublishBudget=1s"},
		{"replica lag past settle", func(c *publisher.Config) { c.Timing.ReplicaLag = 2 * time.Second }, "ReplicaLag=2s"},
	}
	for _, c := range cases {
		cfg := publisher.DefaultConfig()
		c.edit(&cfg)
		if _, err := publisher.New(backends[1].open(t), cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New error %v, want one naming %s", c.name, err, c.want)
		}
	}
	if _, err := publisher.New(nil, publisher.DefaultConfig()); err == nil {
		t.Error("New with a nil store succeeded")
	}
}

// TestPutVersionBackdated: a version older than the publish budget would
// land in the change log below every reader's cursor, so the value is
// published again under a fresh version, and the log carries that one.
func TestPutVersionBackdated(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		ctx := testCtx(t)
		old := record.Record{Namespace: "routes", Key: "a", Value: []byte(`"v1"`), Version: record.MakeVersion(time.Now().Add(-time.Hour), 0)}
		before := time.Now()
		written, err := e.pub.PutVersion(ctx, old)
		if err != nil || !written {
			t.Fatalf("PutVersion of an hour-old version = %v, %v; want written", written, err)
		}
		got, err := e.pub.Get(ctx, "routes", "a")
		if err != nil || string(got.Value) != `"v1"` || got.Version.Time().Before(before.Truncate(time.Millisecond)) {
			t.Fatalf("stored %+v, %v; want v1 under a version of now", got, err)
		}
		cs := logOf(t, e.store)
		if len(cs) == 0 || cs[len(cs)-1].Version != got.Version {
			t.Fatalf("change log %+v does not end with the restamped version %s", cs, got.Version)
		}
		if n := e.notify.records(); len(n) != 1 || n[0].Version != got.Version {
			t.Fatalf("notifications %+v, want one of %s", n, got.Version)
		}
		if pend, ok := e.store.(origin.Pending); ok {
			if notes, err := pend.ListPending(ctx, 0); err != nil || len(notes) != 0 {
				t.Fatalf("pending notes after an acknowledged write: %+v, %v", notes, err)
			}
		}
	})
}

// TestRepair: notes left by a publisher that died are resolved by the next
// one's repair pass according to what the origin holds.
func TestRepair(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := b.open(t)
		e := newEnv(t, store, nil)
		ctx := testCtx(t)
		pend := store.(origin.Pending)
		past := record.MakeVersion(time.Now().Add(-10*time.Second), 0)
		// landed: the record holds the noted version, its log entry is
		// missing (died between CAS and log).
		landed := record.Record{Namespace: "routes", Key: "landed", Value: []byte(`1`), Version: past}
		if err := store.CompareAndSwap(ctx, landed, 0); err != nil {
			t.Fatal(err)
		}
		// superseded: a newer version is stored.
		if _, err := e.pub.Put(ctx, "routes", "superseded", []byte(`2`)); err != nil {
			t.Fatal(err)
		}
		// young: noted just now, maybe still in flight.
		young := record.Change{Namespace: "routes", Key: "young", Version: record.MakeVersion(time.Now().Add(time.Minute), 0)}
		// unlanded: noted 10 s ago, never written; kept for a late request.
		notes := []record.Change{
			landed.Change(),
			{Namespace: "routes", Key: "superseded", Version: past},
			young,
			{Namespace: "routes", Key: "unlanded", Version: past},
		}
		for _, c := range notes {
			if err := pend.PutPending(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		n, err := e.pub.Repair(ctx)
		if err != nil || n != 1 {
			t.Fatalf("Repair = %d, %v; want 1 repaired", n, err)
		}
		got, err := e.pub.Get(ctx, "routes", "landed")
		if err != nil || got.Version <= past || string(got.Value) != `1` {
			t.Fatalf("landed after repair: %+v, %v; want its value under a fresh version", got, err)
		}
		if cs := logOf(t, store); cs[len(cs)-1].Version != got.Version || cs[len(cs)-1].Key != "landed" {
			t.Fatalf("change log %+v does not end with the repaired write", cs)
		}
		left, err := pend.ListPending(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]bool{}
		for _, c := range left {
			keys[c.Key] = true
		}
		if len(left) != 2 || !keys["young"] || !keys["unlanded"] {
			t.Fatalf("notes left %+v, want young and unlanded", left)
		}
	})
}

// TestTwoPublishersOneVersion: two publishers whose clocks hand out the same
// versions (here, both frozen at one instant) write one key. No version is
// ever acknowledged, notified or logged with two different values: the one
// whose version is taken writes again above it. Before the origin refused an
// equal version with other content, the second Put returned the first's
// version with its own value, which the origin never held.
func TestTwoPublishersOneVersion(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		store := b.open(t)
		frozen := time.Now()
		clock := func() *record.Clock { return record.NewClock(func() time.Time { return frozen }) }
		e1 := newEnv(t, store, func(c *publisher.Config) { c.Clock = clock() })
		e2 := newEnv(t, store, func(c *publisher.Config) { c.Clock = clock() })
		ctx := testCtx(t)

		// One after the other: both clocks hand out the same first version.
		r1, err := e1.pub.Put(ctx, "routes", "a", []byte(`"one"`))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := e2.pub.Put(ctx, "routes", "a", []byte(`"two"`))
		if err != nil {
			t.Fatal(err)
		}
		if r2.Version <= r1.Version {
			t.Fatalf("second publisher's Put acknowledged @%s, not above the first's @%s", r2.Version, r1.Version)
		}
		if got := state(t, store, "routes", "a")["a"]; got.Version != r2.Version || string(got.Value) != `"two"` {
			t.Fatalf("store holds %s@%s, want the second Put's %s@%s", got.Value, got.Version, r2.Value, r2.Version)
		}

		// At once, many times: every acknowledged write's version names
		// its value alone, and the store holds the newest acknowledged.
		type ack struct {
			v   record.Version
			val string
		}
		var mu sync.Mutex // guards acks
		var acks []ack
		var wg sync.WaitGroup
		for i, e := range []*env{e1, e2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 40 {
					val := fmt.Sprintf(`"p%d-%d"`, i, j)
					rec, err := e.pub.Put(ctx, "routes", "b", []byte(val))
					if errors.Is(err, origin.ErrStale) || errors.Is(err, publisher.ErrBudget) {
						continue // outrun three times in a row, or overran its budget on a busy machine: not acknowledged
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acks = append(acks, ack{rec.Version, val})
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		byVersion := make(map[record.Version]string)
		var newest ack
		for _, a := range acks {
			if other, ok := byVersion[a.v]; ok && other != a.val {
				t.Errorf("version %s acknowledged for %s and for %s", a.v, other, a.val)
			}
			byVersion[a.v] = a.val
			if a.v > newest.v {
				newest = a
			}
		}
		if got := state(t, store, "routes", "b")["b"]; got.Version != newest.v || string(got.Value) != newest.val {
			t.Errorf("store holds %s@%s, the newest acknowledged write is %s@%s", got.Value, got.Version, newest.val, newest.v)
		}
		notified := make(map[string]string) // by key@version
		for _, e := range []*env{e1, e2} {
			for _, r := range e.notify.records() {
				kv := r.Key + "@" + r.Version.String()
				if other, ok := notified[kv]; ok && other != string(r.Value) {
					t.Errorf("%s/%s notified with %s and with %s", r.Namespace, kv, other, r.Value)
				}
				notified[kv] = string(r.Value)
			}
		}
	})
}
