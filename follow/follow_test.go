package follow_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// target records what a Follower hands it, and what it is told.
type target struct {
	mu          sync.Mutex // guards everything below
	handed      map[string][]record.Version
	tombs       int
	caught      []record.Version // the "to" of each CaughtUp
	revalidates int
	recoverV    record.Version // what Recover returns; 0: it fails
	recovers    int
}

func newTarget() *target { return &target{handed: make(map[string][]record.Version)} }

func (t *target) Apply(rec record.Record) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tombs++
	t.handed[rec.Namespace+"/"+rec.Key] = append(t.handed[rec.Namespace+"/"+rec.Key], rec.Version)
	return true
}

func (t *target) Invalidate(ns, key string, v record.Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.handed[ns+"/"+key] = append(t.handed[ns+"/"+key], v)
}

func (t *target) CaughtUp(from, to record.Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.caught = append(t.caught, to)
}

func (t *target) RevalidateAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revalidates++
}

func (t *target) Recover(ctx context.Context) (record.Version, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recovers++
	if t.recoverV == 0 {
		return 0, errors.New("no snapshot")
	}
	return t.recoverV, nil
}

func (t *target) versions(id string) []record.Version {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]record.Version(nil), t.handed[id]...)
}

func (t *target) catchUps() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.caught)
}

func (t *target) counts() (revalidates, recovers int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.revalidates, t.recovers
}

// eventually polls cond until it holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, what, cond)
}

func publish(t *testing.T, s origin.Store, rec record.Record) record.Record {
	t.Helper()
	if _, err := origin.Publish(context.Background(), s, rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// start runs a follower of s for tg that reads only when told (its
// interval is an hour), from resume.
func start(t *testing.T, s follow.Log, tg follow.Target, resume record.Version, mutate func(*follow.Config)) (*follow.Follower, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := follow.LocalConfig()
	cfg.Interval, cfg.Settle, cfg.Resume, cfg.Registerer = time.Hour, 50*time.Millisecond, resume, reg
	if mutate != nil {
		mutate(&cfg)
	}
	f, err := follow.New(cfg, tg, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f, reg
}

// readOnce asks f to read and waits until tg has been told it caught up
// once more.
func readOnce(t *testing.T, f *follow.Follower, tg *target) {
	t.Helper()
	before := tg.catchUps()
	f.CatchUp("test")
	eventually(t, 10*time.Second, "a log read", func() bool { return tg.catchUps() > before })
}

// TestFollowerHandsEachChangeOnce: every change of the log reaches the
// target, tombstones as records, others as versions; pages and rereads of
// the settle window do not hand a change twice; the cursor ends a settle
// behind the read.
func TestFollowerHandsEachChangeOnce(t *testing.T) {
	s := mem.New()
	clock := record.NewClock(nil)
	tg := newTarget()
	f, _ := start(t, s, tg, record.MakeVersion(time.Now().Add(-time.Minute), 0), func(c *follow.Config) {
		c.Batch = 3 // several pages
		c.Settle = time.Hour
	})
	var recs []record.Record
	for i := range 10 {
		recs = append(recs, publish(t, s, record.Record{Namespace: "routes", Key: fmt.Sprintf("k%d", i), Value: []byte("v"), Version: clock.Now()}))
	}
	gone := publish(t, s, record.Record{Namespace: "routes", Key: "k0", Version: clock.Now(), Tombstone: true})
	readOnce(t, f, tg)
	readOnce(t, f, tg) // rereads everything: the settle window is an hour
	for i, r := range recs {
		want := []record.Version{r.Version}
		if i == 0 {
			want = append(want, gone.Version)
		}
		if got := tg.versions("routes/" + r.Key); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s handed %v, want %v", r.Key, got, want)
		}
	}
	if tg.tombs != 1 {
		t.Errorf("%d tombstones applied, want 1", tg.tombs)
	}
	if c := f.Cursor(); c >= recs[0].Version {
		t.Errorf("cursor %s not a settle (an hour) behind the read", c)
	}
	if hw := f.HighWater(); hw != gone.Version {
		t.Errorf("high water %s, want %s", hw, gone.Version)
	}
}

// TestFollowerTruncated: a log trimmed past the cursor makes the follower
// ask the target to recover from snapshots and read on from there; when
// recovering fails, to revalidate everything, once, and then to jump
// ahead rather than revalidate again when the log is trimmed within the
// settle window.
func TestFollowerTruncated(t *testing.T) {
	s := mem.New()
	clock := record.NewClock(nil)
	old := record.MakeVersion(time.Now().Add(-time.Minute), 0)
	trimmed := publish(t, s, record.Record{Namespace: "routes", Key: "a", Value: []byte("v"), Version: clock.Now()})
	if err := s.TrimLog(context.Background(), trimmed.Version+1); err != nil {
		t.Fatal(err)
	}
	after := publish(t, s, record.Record{Namespace: "routes", Key: "b", Value: []byte("v"), Version: clock.Now()})

	t.Run("recover", func(t *testing.T) {
		tg := newTarget()
		tg.recoverV = trimmed.Version // the snapshots' version
		_, reg := start(t, s, tg, old, nil)
		eventually(t, 10*time.Second, "the start read", func() bool { return tg.catchUps() == 1 })
		if r, rc := tg.counts(); r != 0 || rc != 1 {
			t.Errorf("revalidations %d, recoveries %d; want 0, 1", r, rc)
		}
		if got := tg.versions("routes/b"); len(got) != 1 || got[0] != after.Version {
			t.Errorf("after recovering, b handed %v, want [%s]", got, after.Version)
		}
		if n := reads(t, reg, "start", "truncated"); n != 1 {
			t.Errorf("truncated reads %v, want 1", n)
		}
	})
	t.Run("revalidate", func(t *testing.T) {
		tg := newTarget() // Recover fails
		f, _ := start(t, s, tg, old, func(c *follow.Config) { c.Settle = 0 })
		eventually(t, 10*time.Second, "one revalidation", func() bool { r, _ := tg.counts(); return r == 1 })
		// The log is trimmed past the cursor the revalidation set (the
		// test trimmed to "now"): the next read jumps ahead instead.
		if err := s.TrimLog(context.Background(), clock.Now()); err != nil {
			t.Fatal(err)
		}
		f.CatchUp("test")
		eventually(t, 10*time.Second, "the cursor past the trim", func() bool { return f.Cursor() > after.Version })
		readOnce(t, f, tg)
		if r, _ := tg.counts(); r != 1 {
			t.Errorf("revalidations %d, want exactly 1", r)
		}
	})
}

// reads returns reg's dataplane_follow_log_reads_total{trigger, result}.
func reads(t *testing.T, reg *prometheus.Registry, trigger, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dataplane_follow_log_reads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["trigger"] == trigger && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func testSigner(t *testing.T) *sign.Signer {
	t.Helper()
	_, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestFollowerVerifies: with a Verifier, only changes signed by a trusted
// key reach the target; the others are refused and counted.
func TestFollowerVerifies(t *testing.T) {
	pub, evil := testSigner(t), testSigner(t)
	v, err := sign.NewVerifier(pub.Public())
	if err != nil {
		t.Fatal(err)
	}
	s := mem.New()
	clock := record.NewClock(nil)
	tg := newTarget()
	f, reg := start(t, s, tg, record.MakeVersion(time.Now().Add(-time.Minute), 0), func(c *follow.Config) { c.Verifier = v })
	good := publish(t, s, pub.Sign(record.Record{Namespace: "cfg", Key: "good", Value: []byte("v"), Version: clock.Now()}))
	gone := publish(t, s, pub.Sign(record.Record{Namespace: "cfg", Key: "gone", Version: clock.Now(), Tombstone: true}))
	publish(t, s, record.Record{Namespace: "cfg", Key: "unsigned", Value: []byte("x"), Version: clock.Now()})
	publish(t, s, evil.Sign(record.Record{Namespace: "cfg", Key: "evil", Value: []byte("x"), Version: clock.Now()}))
	readOnce(t, f, tg)
	if got := tg.versions("cfg/good"); len(got) != 1 || got[0] != good.Version {
		t.Errorf("good: %v", got)
	}
	if got := tg.versions("cfg/gone"); len(got) != 1 || got[0] != gone.Version {
		t.Errorf("gone: %v", got)
	}
	for _, k := range []string{"unsigned", "evil"} {
		if got := tg.versions("cfg/" + k); len(got) != 0 {
			t.Errorf("%s handed on: %v", k, got)
		}
	}
	mfs, _ := reg.Gather()
	refused := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "dataplane_follow_changes_refused_total" {
			for _, m := range mf.GetMetric() {
				refused[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if refused["unsigned"] != 1 || refused["untrusted_key"] != 1 {
		t.Errorf("refused %v, want unsigned and untrusted_key once each", refused)
	}
}

// TestFollowerRewind: Rewind moves the cursor back and reads again from
// there, handing on changes the target may have lost.
func TestFollowerRewind(t *testing.T) {
	s := mem.New()
	clock := record.NewClock(nil)
	tg := newTarget()
	early := record.MakeVersion(time.Now().Add(-time.Minute), 0)
	rec := publish(t, s, record.Record{Namespace: "routes", Key: "a", Value: []byte("v"), Version: clock.Now()})
	f, _ := start(t, s, tg, early, nil)
	eventually(t, 10*time.Second, "the start read", func() bool { return tg.catchUps() == 1 })
	eventually(t, 10*time.Second, "the cursor past a", func() bool {
		if f.Cursor() > rec.Version {
			return true
		}
		f.CatchUp("test")
		return false
	})
	before := tg.catchUps()
	f.Rewind(early)
	eventually(t, 10*time.Second, "a read after the rewind", func() bool { return tg.catchUps() > before })
	if got := tg.versions("routes/a"); len(got) != 2 {
		t.Errorf("a handed %v; want it again after the rewind", got)
	}
}

// rewindingTarget is a target that reloads its state (and rewinds the
// follower to before every change) while the first read hands it a
// change: a reload that lands in the middle of a read, as a node's
// resync after a checkpoint mismatch does.
type rewindingTarget struct {
	*target
	f    atomic.Pointer[follow.Follower]
	to   record.Version
	once sync.Once
}

func (t *rewindingTarget) Invalidate(ns, key string, v record.Version) {
	t.target.Invalidate(ns, key, v)
	if f := t.f.Load(); f != nil {
		t.once.Do(func() { f.Rewind(t.to) })
	}
}

// TestFollowerRewindDuringRead: a read in flight when Rewind is called
// does not move the cursor past the rewind (a chaos run lost changes from
// a node's state that way: the read's declare undid the resync's rewind,
// and the changes handed to the state it replaced were never handed
// again), and the read after it hands every change on again.
func TestFollowerRewindDuringRead(t *testing.T) {
	s := mem.New()
	early := record.MakeVersion(time.Now().Add(-time.Minute), 0)
	// Settled long before the read: the read's cursor passes them.
	a := publish(t, s, record.Record{Namespace: "routes", Key: "a", Value: []byte("v"), Version: record.MakeVersion(time.Now().Add(-10*time.Second), 0)})
	b := publish(t, s, record.Record{Namespace: "routes", Key: "b", Value: []byte("v"), Version: record.MakeVersion(time.Now().Add(-10*time.Second), 1)})
	tg := &rewindingTarget{target: newTarget(), to: early}
	f, reg := start(t, s, tg, 0, nil)
	tg.f.Store(f)
	f.Rewind(early) // the first read starts here; its first change rewinds again
	eventually(t, 10*time.Second, "a read that completes", func() bool { return tg.catchUps() >= 1 })
	if got := reads(t, reg, "rewind", "rewound"); got != 1 {
		t.Errorf("reads ended by a rewind: %v, want 1", got)
	}
	for _, rec := range []record.Record{a, b} {
		if got := tg.versions("routes/" + rec.Key); len(got) < 2 {
			t.Errorf("%s handed %v; want it again after the rewind in the middle of the read", rec.Key, got)
		}
	}
}

// TestConfigValidate: each bad setting is refused by New.
func TestConfigValidate(t *testing.T) {
	for name, mutate := range map[string]func(*follow.Config){
		"no interval":     func(c *follow.Config) { c.Interval = 0 },
		"negative settle": func(c *follow.Config) { c.Settle = -1 },
		"zero batch":      func(c *follow.Config) { c.Batch = 0 },
	} {
		c := follow.DefaultConfig()
		mutate(&c)
		if _, err := follow.New(c, newTarget(), mem.New()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
