package dataplane_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/record"
)

const peerToken = "peer-token-for-tests"

// peerSource is a SnapshotSource over a peer's SnapshotHandler, as the
// sentinel command builds it.
func peerSource(t *testing.T, url, token string) dataplane.SnapshotSource {
	t.Helper()
	s, err := httporigin.New(httporigin.Config{Nodes: []string{url}, ReadToken: token, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRestartWithOriginDownWarmsFromPeer: a node that starts while the
// origin is down, with no local snapshot file, warms from a running peer
// over HTTP, including a deletion the peer learned of.
func TestRestartWithOriginDownWarmsFromPeer(t *testing.T) {
	s := newStore(t)
	clock := record.NewClock(nil)
	put(t, s, clock, "routes", "a.example.com", "A")
	put(t, s, clock, "routes", "gone.example.com", "old")
	put(t, s, clock, "keys", "ks/abc", "K")
	gone := record.Record{Namespace: "routes", Key: "gone.example.com", Version: clock.Now(), Tombstone: true}
	if _, err := origin.Publish(context.Background(), s, gone); err != nil {
		t.Fatal(err)
	}

	peer, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, k := range [][2]string{{"routes", "a.example.com"}, {"keys", "ks/abc"}} {
		if _, err := peer.Get(context.Background(), k[0], k[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := peer.Get(context.Background(), "routes", "gone.example.com"); !errors.Is(err, dataplane.ErrNotFound) {
		t.Fatalf("deleted route on the peer: %v", err)
	}
	srv := httptest.NewServer(dataplane.SnapshotHandler(peer, peerToken))
	defer srv.Close()

	s.down.Store(true)
	for _, tc := range []struct {
		name      string
		token     string
		wantReady bool
	}{
		{"wrong token", "not-the-token", false},
		{"right token", peerToken, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := dataplane.Open(context.Background(), dataplane.Config{
				Origin: s, Logger: quiet(), WarmTimeout: 500 * time.Millisecond,
				Peers: []dataplane.SnapshotSource{peerSource(t, srv.URL, tc.token)},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.Ready() != tc.wantReady {
				t.Fatalf("Ready = %v, want %v", n.Ready(), tc.wantReady)
			}
			if !tc.wantReady {
				return
			}
			v, err := n.Get(context.Background(), "routes", "a.example.com")
			if err != nil || string(v.Data) != "A" {
				t.Fatalf("route with the origin down, warmed from a peer: %q, %v", v.Data, err)
			}
			if _, err := n.Get(context.Background(), "keys", "ks/abc"); err != nil {
				t.Fatalf("key warmed from a peer: %v", err)
			}
			// The tombstone came along: a definite not-found, not an
			// unreachable origin.
			if _, err := n.Get(context.Background(), "routes", "gone.example.com"); !errors.Is(err, dataplane.ErrNotFound) {
				t.Fatalf("deleted route after warming from a peer: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestSnapshotHandlerRefuses: no token, a namespace the node does not hold
// whole, a write method, and a node that is not warm itself all get a
// clear error and no records.
func TestSnapshotHandlerRefuses(t *testing.T) {
	s := newStore(t)
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: s, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cold := newStore(t)
	cold.down.Store(true)
	coldNode, err := dataplane.Open(context.Background(), dataplane.Config{Origin: cold, Logger: quiet(), WarmTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer coldNode.Close()

	for _, tc := range []struct {
		name, method, path, token string
		node                      *dataplane.Node
		handlerToken              string
		want                      int
	}{
		{"ok", "GET", "/v1/snapshots/routes", peerToken, n, peerToken, 200},
		{"no token", "GET", "/v1/snapshots/routes", "", n, peerToken, 401},
		{"wrong token", "GET", "/v1/snapshots/routes", "x", n, peerToken, 401},
		{"handler without a token serves nobody", "GET", "/v1/snapshots/routes", peerToken, n, "", 403},
		{"namespace not held whole", "GET", "/v1/snapshots/configs", peerToken, n, peerToken, 404},
		{"bad namespace", "GET", "/v1/snapshots/Bad%20NS", peerToken, n, peerToken, 404},
		{"write", "PUT", "/v1/snapshots/routes", peerToken, n, peerToken, 405},
		{"not warm", "GET", "/v1/snapshots/routes", peerToken, coldNode, peerToken, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			dataplane.SnapshotHandler(tc.node, tc.handlerToken).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.want)
			}
			if tc.want != http.StatusOK && rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("error answer is %q, want JSON", rec.Header().Get("Content-Type"))
			}
		})
	}
}

// claimingPeer answers every snapshot with one key and a Version of "now":
// what an insider peer may claim, since nothing signs a snapshot's Version.
type claimingPeer struct{}

func (claimingPeer) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	v := record.MakeVersion(time.Now(), 0)
	return record.Snapshot{Namespace: ns, Version: v, Records: []record.Record{
		{Namespace: ns, Key: "ks/held", Value: []byte("K"), Version: v - 1},
	}}, nil
}

// TestPeerSnapshotIsNoProofOfFreshness: a node warmed from a peer while the
// origin is down serves what the peer sent, but the peer's claim of being
// current (its snapshot's Version) does not keep a fail-closed namespace
// open: a peer could have left a revocation out.
func TestPeerSnapshotIsNoProofOfFreshness(t *testing.T) {
	s := newStore(t)
	s.down.Store(true)
	// With gossip: the log (down) would be the proof; in TTL-only mode a
	// value's own confirmation counts, which a peer's snapshot also sets.
	g := gossip.DefaultLocalConfig()
	g.Insecure, g.Name = true, "warmed-from-peer"
	n, err := dataplane.Open(context.Background(), dataplane.Config{
		Origin: s, Gossip: &g.Cluster, Logger: quiet(), WarmTimeout: 500 * time.Millisecond,
		Peers:     []dataplane.SnapshotSource{claimingPeer{}},
		Staleness: map[string]dataplane.Policy{"keys": {FailClosedAfter: time.Hour}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if !n.Ready() {
		t.Fatal("not warmed from the peer")
	}
	if v, err := n.Get(context.Background(), "routes", "ks/held"); err != nil || string(v.Data) != "K" {
		t.Fatalf("serve-stale namespace warmed from a peer: %q, %v", v.Data, err)
	}
	// The read path checks a flag recomputed every 50 ms: poll.
	if !testkit.Poll(10*time.Second, func() bool {
		_, err = n.Get(context.Background(), "keys", "ks/held")
		return errors.Is(err, dataplane.ErrUnavailable)
	}) {
		t.Fatalf("fail-closed namespace proven current only by a peer: %v, want ErrUnavailable", err)
	}
}
