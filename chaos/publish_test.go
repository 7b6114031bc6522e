package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// Timing of the publish fault tests: readers settle 1 s behind a complete
// log read, publishers must reach the log within 400 ms of taking a version
// with clocks within 100 ms (origin.Timing holds them together).
const (
	pfSettle   = time.Second
	pfInterval = 250 * time.Millisecond
	pfBudget   = 400 * time.Millisecond
	pfSkew     = 100 * time.Millisecond
)

// pfTiming is the timing of these tests' publishers and node.
func pfTiming() origin.Timing {
	t := origin.LocalTiming()
	t.PublishBudget, t.ClockSkew = pfBudget, pfSkew
	t.LogInterval, t.LogSettle, t.LogTailTTL = pfInterval, pfSettle, 0
	return t
}

const (
	pfNodes = 3
	pfNS    = "app"
	// pfConverge bounds how long every node may take to serve an
	// acknowledged write through the log: far below the nodes' 30 s fresh
	// window, so nothing but the log can have told them.
	pfConverge = 15 * time.Second
)

// publishFault is one way a publish can go wrong.
type publishFault struct {
	name string
	// hook injects the fault; raw is the real store, for a hook that
	// completes a step late behind the publisher's back.
	hook func(raw origin.Store) WriteHook
	// restart: the publisher died; a new one starts and repairs.
	restart bool
	// landed: the write must end up everywhere (it reached the origin);
	// otherwise it must never be served anywhere.
	landed bool
}

// once makes a hook act on the first write of step only.
func once(step Step, act func(ctx context.Context, c record.Change) error) WriteHook {
	var done atomic.Bool
	return func(ctx context.Context, s Step, c record.Change) error {
		if s != step || done.Swap(true) {
			return nil
		}
		return act(ctx, c)
	}
}

var publishFaults = []publishFault{
	{
		name: "note fails",
		hook: func(origin.Store) WriteHook {
			return once(StepNote, func(context.Context, record.Change) error { return errors.New("injected: note write failed") })
		},
	},
	{
		name: "CAS fails",
		hook: func(origin.Store) WriteHook {
			return once(StepCAS, func(context.Context, record.Change) error {
				return fmt.Errorf("injected: %w", origin.ErrUnavailable)
			})
		},
	},
	{
		name: "crash before CAS",
		hook: func(origin.Store) WriteHook {
			return once(StepCAS, func(context.Context, record.Change) error { return ErrCrashed })
		},
		restart: true,
	},
	{
		name: "crash between CAS and log",
		hook: func(origin.Store) WriteHook {
			return once(StepLog, func(context.Context, record.Change) error { return ErrCrashed })
		},
		restart: true, landed: true,
	},
	{
		name: "crash after log",
		hook: func(origin.Store) WriteHook {
			return once(StepClear, func(context.Context, record.Change) error { return ErrCrashed })
		},
		restart: true, landed: true,
	},
	{
		name: "CAS delayed 2x settle",
		hook: func(origin.Store) WriteHook {
			return once(StepCAS, func(context.Context, record.Change) error { time.Sleep(2 * pfSettle); return nil })
		},
		landed: true,
	},
	{
		// The log entry does arrive, 2 s late, below every reader's
		// cursor: only the publisher's restamp can tell the readers.
		name: "log entry 2x settle late",
		hook: func(raw origin.Store) WriteHook {
			return once(StepLog, func(_ context.Context, c record.Change) error {
				time.Sleep(2 * pfSettle)
				return raw.AppendLog(context.Background(), c)
			})
		},
		landed: true,
	},
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func pfConfig(tweak func(*publisher.Config)) publisher.Config {
	cfg := publisher.DefaultConfig()
	cfg.Timing = pfTiming()
	cfg.Logger = discard()
	if tweak != nil {
		tweak(&cfg)
	}
	return cfg
}

// TestPublishFaults injects a fault at every step of a publish, with gossip
// notifications off, over a directory and over real S3 and DynamoDB
// servers: every acknowledged write, and every write that reached the
// origin, reaches every node through the change log; a write that did not
// reach the origin is never served.
func TestPublishFaults(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) origin.Store
	}{
		{"dir", func(t *testing.T) origin.Store {
			s, err := dir.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"s3", openS3},
		{"dynamodb", openDynamo},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { runPublishFaults(t, b.open(t)) })
	}
}

func openS3(t *testing.T) origin.Store {
	srv := testserver.StartS3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3.New(ctx, s3.Config{
		Bucket: "pubfaults", UsePathStyle: true,
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 100 * time.Millisecond,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// finishingClient sends each request to the end even when its context ends
// first, and answers the caller at once with the context's error: dynalite
// 4.0.0 crashes ("Error: aborted", ECONNRESET thrown from a request's error
// handler) when a client closes a connection mid-request, which the SDK
// does whenever a context is cancelled. Real DynamoDB does not care; the
// tests cancel requests all the time (publish budgets, read timeouts). For
// the same reason idle connections are closed after 2 s, before dynalite's
// 5 s keep-alive timeout can close one just as a request is sent on it.
type finishingClient struct{ c *http.Client }

func (f finishingClient) Do(r *http.Request) (*http.Response, error) {
	type result struct {
		resp *http.Response
		err  error
	}
	// The body is read here, not by the transport: the SDK's body reader
	// may stop with the context, which would cut the request short.
	ctx := r.Context()
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	req := r.Clone(context.WithoutCancel(ctx))
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	done := make(chan result, 1)
	go func() {
		resp, err := f.c.Do(req)
		done <- result{resp, err}
	}()
	select {
	case res := <-done:
		return res.resp, res.err
	case <-ctx.Done():
		go func() {
			if res := <-done; res.err == nil {
				io.Copy(io.Discard, res.resp.Body)
				res.resp.Body.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func newFinishingClient() finishingClient {
	return finishingClient{c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 2 * time.Second}}}
}

func openDynamo(t *testing.T) origin.Store {
	srv := testserver.StartDynamo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := dynamodb.New(ctx, dynamodb.Config{
		Table: "pubfaults",
		Conn: awsconn.Conn{
			Endpoint: srv.Endpoint, Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			HTTPClient: newFinishingClient(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// pfNode opens one node reading store, following the log, joined to seeds.
func pfNode(t *testing.T, store origin.Store, name string, seeds []string) *dataplane.Node {
	t.Helper()
	g := gossip.DefaultLocalConfig()
	g.Insecure = true // plaintext on loopback, on purpose
	g.Name, g.Region, g.Seeds = name, "a", seeds
	ml := *g.Memberlist
	ml.LogOutput = io.Discard
	g.Memberlist = &ml
	copts := cache.DefaultConfig()
	copts.Default = cache.Window{Fresh: 30 * time.Second, Stale: time.Hour}
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: store, Cache: copts, Gossip: &g.Cluster, Namespaces: []string{},
		Timing: pfTiming(),
		Logger: discard(), Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func runPublishFaults(t *testing.T, store origin.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var nodes []*dataplane.Node
	for i := 0; i < pfNodes; i++ {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].GossipAddr()}
		}
		nodes = append(nodes, pfNode(t, store, fmt.Sprint("n", i), seeds))
	}
	healthy, err := publisher.New(store, pfConfig(nil)) // no Notifier: gossip carries nothing
	if err != nil {
		t.Fatal(err)
	}
	key := func(f publishFault) string { return "k-" + f.name }
	// Every node holds the old value, fresh for 30 s.
	for _, f := range publishFaults {
		if _, err := healthy.Put(ctx, pfNS, key(f), []byte(`"old"`)); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if v, err := n.Get(ctx, pfNS, key(f)); err != nil || string(v.Data) != `"old"` {
				t.Fatalf("warm %s: %q, %v", key(f), v.Data, err)
			}
		}
	}

	// Readers record every value any node serves.
	var seenMu sync.Mutex
	seen := make(map[string]map[string]bool) // key -> values served
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for _, n := range nodes {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				for _, f := range publishFaults {
					rctx, rcancel := context.WithTimeout(ctx, time.Second)
					v, err := n.Get(rctx, pfNS, key(f))
					rcancel()
					if err == nil {
						seenMu.Lock()
						if seen[key(f)] == nil {
							seen[key(f)] = make(map[string]bool)
						}
						seen[key(f)][string(v.Data)] = true
						seenMu.Unlock()
					}
				}
			}
		}()
	}

	// Every fault at once, each on its own key and its own publisher.
	type outcome struct {
		acked record.Record
		err   error
		wf    *WriteFaults
	}
	results := make([]outcome, len(publishFaults))
	var wg sync.WaitGroup
	for i, f := range publishFaults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wf := NewWriteFaults(store, f.hook(store))
			p, err := publisher.New(wf, pfConfig(nil))
			if err != nil {
				results[i].err = err
				return
			}
			rec, err := p.Put(ctx, pfNS, key(f), []byte(`"new"`))
			results[i] = outcome{acked: rec, err: err, wf: wf}
		}()
	}
	wg.Wait()

	// Restart the publishers that died: the new one's repair pass (as
	// RunRepair does at start) finishes what they left.
	for i, f := range publishFaults {
		r := results[i]
		if r.wf == nil {
			t.Fatalf("%s: %v", f.name, r.err)
		}
		t.Logf("%s: acked %v (version %s), err %v; writes: note %d cas %d log %d clear %d", f.name, r.err == nil, r.acked.Version,
			r.err, r.wf.Steps(StepNote), r.wf.Steps(StepCAS), r.wf.Steps(StepLog), r.wf.Steps(StepClear))
		if f.restart != r.wf.Crashed() {
			t.Fatalf("%s: crashed = %v, want %v", f.name, r.wf.Crashed(), f.restart)
		}
		if !f.landed && r.err == nil {
			t.Fatalf("%s: acknowledged a write that never reached the origin", f.name)
		}
	}
	restarted, err := publisher.New(store, pfConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !pollUntil(10*time.Second, func() bool {
		if _, err := restarted.Repair(ctx); err != nil {
			t.Logf("repair: %v", err)
		}
		pend, err := store.(origin.Pending).ListPending(ctx, 0)
		if err != nil {
			return false
		}
		// Only notes of writes that never landed stay (for pendingExpiry).
		for _, c := range pend {
			cur, err := store.Get(ctx, c.Namespace, c.Key, 0)
			if err == nil && cur.Version >= c.Version {
				return false
			}
		}
		return true
	}) {
		t.Fatal("repair left notes of writes that landed")
	}

	// Every node converges, through the log alone, to the origin's state,
	// which holds the new value exactly for the faults whose write landed.
	for i, f := range publishFaults {
		cur, err := store.Get(ctx, pfNS, key(f), 0)
		if err != nil {
			t.Fatal(err)
		}
		want := `"old"`
		if f.landed {
			want = `"new"`
		}
		if string(cur.Value) != want {
			t.Fatalf("%s: origin holds %s, want %s", f.name, cur.Value, want)
		}
		if r := results[i]; r.err == nil && cur.Version < r.acked.Version {
			t.Fatalf("%s: origin holds version %s below the acknowledged %s", f.name, cur.Version, r.acked.Version)
		}
		for j, n := range nodes {
			var last dataplane.Value
			if !pollUntil(pfConverge, func() bool {
				v, err := n.Get(ctx, pfNS, key(f))
				last = v
				return err == nil && v.Version == cur.Version && string(v.Data) == want
			}) {
				t.Fatalf("%s: node n%d serves %s@%s, origin holds %s@%s", f.name, j, last.Data, last.Version, cur.Value, cur.Version)
			}
		}
	}
	close(stop)
	readers.Wait()
	for _, f := range publishFaults {
		if !f.landed && seen[key(f)][`"new"`] {
			t.Fatalf("%s: a node served the value of a write that never reached the origin", f.name)
		}
	}
}
