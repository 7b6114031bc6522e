package publisher_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// backend makes a fresh store; reopen returns a second handle on the same
// data, as a cold process would open it (the same handle for mem).
type backend struct {
	name   string
	open   func(t *testing.T) origin.Store
	reopen func(t *testing.T, s origin.Store) origin.Store
}

var backends = []backend{
	{
		name: "dir",
		open: func(t *testing.T) origin.Store {
			s, err := dir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		reopen: func(t *testing.T, s origin.Store) origin.Store {
			s2, err := dir.Open(s.(*dir.Store).Root())
			if err != nil {
				t.Fatal(err)
			}
			return s2
		},
	},
	{
		name:   "mem",
		open:   func(t *testing.T) origin.Store { return mem.New() },
		reopen: func(t *testing.T, s origin.Store) origin.Store { return s },
	},
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// fakeNotifier records what it was told, and fails or panics on demand.
type fakeNotifier struct {
	mu    sync.Mutex // guards got, fail, panics
	got   []record.Record
	fail  error
	panic bool
}

func (n *fakeNotifier) Publish(ctx context.Context, rec record.Record) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	rec.Value = append([]byte(nil), rec.Value...)
	n.got = append(n.got, rec)
	if n.panic {
		panic("notifier exploded")
	}
	return n.fail
}

func (n *fakeNotifier) records() []record.Record {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]record.Record(nil), n.got...)
}

type env struct {
	store  origin.Store
	pub    *publisher.Publisher
	reg    *prometheus.Registry
	notify *fakeNotifier
	logs   *testkit.SyncBuffer
}

func newEnv(t *testing.T, store origin.Store, edit func(*publisher.Config)) *env {
	t.Helper()
	e := &env{store: store, reg: prometheus.NewRegistry(), notify: &fakeNotifier{}, logs: &testkit.SyncBuffer{}}
	cfg := publisher.DefaultConfig()
	cfg.Notifier = e.notify
	cfg.Registerer = e.reg
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	cfg.Schemas = schema.NewRegistry() // tests write arbitrary values; schema_test.go checks schemas
	if edit != nil {
		edit(&cfg)
	}
	p, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.pub = p
	return e
}

// metric returns the value of a counter or the sample count of a histogram
// (summed over labels) from the env's registry.
func (e *env) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// state reads the stored records of keys; absent keys are left out.
func state(t *testing.T, s origin.Store, ns string, keys ...string) map[string]record.Record {
	t.Helper()
	out := make(map[string]record.Record)
	for _, k := range keys {
		r, err := s.Get(testCtx(t), ns, k, 0)
		if errors.Is(err, origin.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("Get %s/%s: %v", ns, k, err)
		}
		out[k] = r
	}
	return out
}

// logOf returns every change in the store's log.
func logOf(t *testing.T, s origin.Store) []record.Change {
	t.Helper()
	cs, err := s.ReadLog(testCtx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
