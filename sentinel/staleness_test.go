package sentinel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
)

// downStore fails every read while down, as an unreachable origin does.
type downStore struct {
	origin.Store
	down atomic.Bool
}

func (s *downStore) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if s.down.Load() {
		return record.Record{}, fmt.Errorf("test: %w", origin.ErrUnavailable)
	}
	return s.Store.Get(ctx, ns, key, ifNewer)
}

func (s *downStore) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("test: %w", origin.ErrUnavailable)
	}
	return s.Store.ReadLog(ctx, after, limit)
}

func (s *downStore) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if s.down.Load() {
		return record.Snapshot{}, fmt.Errorf("test: %w", origin.ErrUnavailable)
	}
	return s.Store.GetSnapshot(ctx, ns)
}

// TestAPIKeyCheckFailsClosed: a sentinel that can read neither the log nor
// the origin answers a valid key 503 once -fail-closed's D has passed,
// never 200, while a keyless route keeps serving; and its admin listener
// streams the routes namespace at /v1/watch/ to the token holder.
func TestAPIKeyCheckFailsClosed(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &downStore{Store: d}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "upstream ok")
	}))
	t.Cleanup(up.Close)
	pub, err := publisher.New(d, publisher.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	put := func(ns, key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := pub.Put(context.Background(), ns, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put(sentinel.RoutesNamespace, "open.example.com", sentinel.Route{Upstreams: []string{up.URL}})
	put(sentinel.RoutesNamespace, "app.example.com", sentinel.Route{Upstreams: []string{up.URL}, RequireKey: true, Keyspace: "ks"})
	put(sentinel.KeysNamespace, sentinel.KeyRecordKey("ks", "sk_good"), sentinel.APIKey{KeyID: "key_1", Enabled: true})

	policies, err := dataplane.ParseStaleness("keys=2s")
	if err != nil {
		t.Fatal(err)
	}
	g := gossip.DefaultLocalConfig()
	g.Insecure, g.Name, g.Region = true, "s1", "local"
	// The log read every 300 ms, settled 100 ms behind: this test's
	// writes go straight to the origin, within that budget.
	tm := origin.Timing{
		PublishBudget: 100 * time.Millisecond,
		LogInterval:   300 * time.Millisecond, LogSettle: 100 * time.Millisecond, SnapshotLag: origin.DefaultSnapshotLag,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: store, Gossip: &g.Cluster, Timing: tm, Logger: log, Staleness: policies})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sentinel.Start(sentinel.ServerConfig{
		Node: n, Listener: loopback(t), AdminListener: loopback(t), AdminToken: "adm", Logger: log,
	})
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()); n.Close() })
	gw := "http://" + srv.Addr() + "/"
	status := func(host, authz string) int {
		code, _, err := do(t, http.DefaultClient, "GET", gw, host, authz, nil)
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	testkit.Eventually(t, 60*time.Second, "the key to verify", func() bool {
		return status("app.example.com", "Bearer sk_good") == 200 && status("open.example.com", "") == 200
	})

	store.down.Store(true)
	var code int
	if !testkit.Poll(60*time.Second, func() bool {
		code = status("app.example.com", "Bearer sk_good")
		return code != 200
	}) || code != http.StatusServiceUnavailable {
		t.Fatalf("key check with the origin down: %d, want 200 then 503", code)
	}
	if code := status("open.example.com", ""); code != 200 {
		t.Fatalf("keyless route with the origin down: %d, want 200 (routes serve stale)", code)
	}

	// The change stream on the admin listener.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+srv.AdminAddr()+dataplane.WatchPath+"routes?after=0", nil)
	req.Header.Set("Authorization", "Bearer adm")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/watch/routes: %d", resp.StatusCode)
	}
	hosts := make(map[string]bool)
	sc := bufio.NewScanner(resp.Body)
	for len(hosts) < 2 && sc.Scan() {
		var l dataplane.WatchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == "change" {
			hosts[l.Key] = true
		}
	}
	if !hosts["open.example.com"] || !hosts["app.example.com"] {
		t.Fatalf("watch stream replayed %v (err %v), want both routes", hosts, sc.Err())
	}
	if !statusFailing(n) {
		t.Fatal("status does not report keys failing closed")
	}
}

func statusFailing(n *dataplane.Node) bool {
	for _, st := range n.Status().Namespaces {
		if st.Namespace == "keys" {
			return st.FailingClosed
		}
	}
	return false
}
