package httporigin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
)

// TestGetAsksForRevalidation: record reads carry "Cache-Control: max-age=0",
// so that a cache node never hands its stale copy over as current (the
// caller would start a new fresh window from it).
func TestGetAsksForRevalidation(t *testing.T) {
	var got atomic.Value
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Cache-Control"))
		w.Header().Set("Content-Type", wire.ContentTypeJSON)
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"not found","code":"not_found"}`))
	}))
	defer node.Close()
	s, err := httporigin.New(httporigin.Config{Nodes: []string{node.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "routes", "a.example.com", 0); !errors.Is(err, origin.ErrNotFound) {
		t.Fatalf("Get: %v, want ErrNotFound", err)
	}
	if cc, _ := got.Load().(string); cc != "max-age=0" {
		t.Fatalf("Cache-Control sent: %q, want max-age=0", cc)
	}
}
