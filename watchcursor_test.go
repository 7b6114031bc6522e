package dataplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// TestWatchFromCursorAhead: a cursor no node could have reached (further
// ahead of the node's clock than MaxFutureSkew) is refused with
// ErrCursorAhead, in Go and over HTTP (400 with the reason), rather than
// answered with a watch that stays silent for good; a cursor merely ahead
// of what the node has applied is accepted and the watch delivers the
// first change after it once the node reaches it.
func TestWatchFromCursorAhead(t *testing.T) {
	c := newWatchCluster(t)
	ctx := context.Background()
	for _, after := range []record.Version{
		record.Version(1<<64 - 1),
		record.MakeVersion(time.Now().Add(time.Hour), 0),
	} {
		ws, err := c.b.WatchFrom(ctx, "routes", after, dataplane.WatchOptions{})
		if !errors.Is(err, dataplane.ErrCursorAhead) {
			if ws != nil {
				ws.Stop()
			}
			t.Fatalf("WatchFrom(%s) = %v, want ErrCursorAhead", after, err)
		}
	}

	srv := httptest.NewServer(dataplane.WatchHandler(c.b, "secret"))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+dataplane.WatchPath+"routes?after=ffffffffffffffff", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Error string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || err != nil || !strings.Contains(body.Error, "cursor") {
		t.Fatalf("GET ?after=ffffffffffffffff: %d %q (%v), want 400 naming the cursor", resp.StatusCode, body.Error, err)
	}

	// A cursor ahead of the node but within the skew (a node further
	// along gave it): the watch is accepted and silent until the node
	// applies a change past it. r1 is before the cursor, r2 after it;
	// both within the skew, so b applies them.
	ahead := record.MakeVersion(time.Now().Add(2*time.Second), 0)
	ws, err := c.b.WatchFrom(ctx, "routes", ahead, dataplane.WatchOptions{Progress: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("WatchFrom(2s ahead) = %v, want a watch", err)
	}
	t.Cleanup(ws.Stop)
	publishAt := func(key string, v record.Version) {
		r := record.Record{Namespace: "routes", Key: key, Value: []byte(key), Version: v}
		if _, err := origin.Publish(ctx, c.store, r); err != nil {
			t.Fatal(err)
		}
		if err := c.a.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "b applies "+key, func() bool {
			ch, ok := c.b.Known("routes", key)
			return ok && ch.Version == v
		})
	}
	publishAt("before.example.com", ahead-1)
	publishAt("after.example.com", ahead+1)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-ws.C:
			if !ok {
				t.Fatalf("watch ended: %v", ws.Err())
			}
			if ev.Cursor < ahead {
				t.Fatalf("cursor %s went behind the watch's cursor %s", ev.Cursor, ahead)
			}
			if ev.Progress {
				continue
			}
			if ev.Change.Key != "after.example.com" {
				t.Fatalf("delivered %s@%s, not after the cursor %s", ev.Change.Key, ev.Change.Version, ahead)
			}
			return
		case <-deadline:
			t.Fatalf("the change after the cursor never arrived")
		}
	}
}

// TestWatchFromTTLOnly: a node that follows no change log can never hold a
// namespace whole, so WatchFrom says so with its own error and HTTP a
// non-retryable 501, not a 503 to retry for ever.
func TestWatchFromTTLOnly(t *testing.T) {
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: newStore(t), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.WatchFrom(context.Background(), "routes", 0, dataplane.WatchOptions{}); !errors.Is(err, dataplane.ErrWatchTTLOnly) || errors.Is(err, dataplane.ErrWatchIncomplete) {
		t.Fatalf("WatchFrom on a TTL-only node = %v, want ErrWatchTTLOnly", err)
	}
	srv := httptest.NewServer(dataplane.WatchHandler(n, "secret"))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+dataplane.WatchPath+"routes", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("GET on a TTL-only node: %d (Retry-After %q), want 501 without Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
