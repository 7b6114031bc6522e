package httporigin_test

import (
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/record"
)

// TestCheckpointPartsFailover: the namespace's checkpoint parts are read
// from its node, from the next node when that one is down, and from the
// fallback's parts when none answers; a fallback that keeps no parts
// leaves the read unavailable. The Store itself is no SnapshotParts (a
// publisher writing through the tier keeps writing whole snapshots), but
// origin.CheckpointPartsOf finds its view.
func TestCheckpointPartsFailover(t *testing.T) {
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Truncate(time.Millisecond)
	c := &checkpoint.Checkpoint{Namespace: "keys", Version: record.MakeVersion(at.Add(-time.Second), 0), IssuedAt: at, ExpiresAt: at.Add(time.Minute)}
	if err := checkpoint.PutLatest(ctx(t), d, c); err != nil {
		t.Fatal(err)
	}
	a, b := partsNode(t, d), partsNode(t, d)
	for _, tc := range []struct {
		name     string
		fallback origin.Store
		stop     []*httptest.Server
		want     error
	}{
		{"both nodes up", nil, nil, nil},
		{"one node down", nil, []*httptest.Server{a}, nil},
		{"every node down, fallback", d, []*httptest.Server{a, b}, nil},
		{"every node down, fallback without parts", struct{ origin.Store }{d}, []*httptest.Server{a, b}, origin.ErrUnavailable},
	} {
		for _, n := range tc.stop {
			n.Close()
		}
		s, err := httporigin.New(httporigin.Config{Nodes: []string{a.URL, b.URL}, Fallback: tc.fallback, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := any(s).(origin.SnapshotParts); ok {
			t.Fatal("httporigin.Store is a SnapshotParts: publishers would write parts through the tier")
		}
		parts := origin.CheckpointPartsOf(s)
		got, err := checkpoint.GetLatest(ctx(t), parts, "keys")
		if tc.want != nil {
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
			}
			continue
		}
		if err != nil || got.Version != c.Version || !got.IssuedAt.Equal(c.IssuedAt) {
			t.Fatalf("%s: %v, %v; want %s", tc.name, got, err, c)
		}
	}
}

// partsNode serves a cache node over d itself (its snapshot parts
// included) on loopback.
func partsNode(t *testing.T, d *dir.Store) *httptest.Server {
	t.Helper()
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = d, token, slog.New(slog.DiscardHandler)
	n, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(n)
	t.Cleanup(func() { srv.Close(); n.Close() })
	return srv
}
