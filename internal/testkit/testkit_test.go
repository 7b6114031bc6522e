package testkit

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestSyncBuffer writes from many goroutines (run with -race) and checks
// that every write is kept whole.
func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "w%d\n", i)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

// TestGet checks that Get sends the Host and Authorization it is given,
// and none when they are empty.
func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "%s|%s", r.Host, r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	if code, body := Get(t, srv.URL, "app.example.com", Bearer("k")); code != http.StatusTeapot || body != "app.example.com|Bearer k" {
		t.Errorf("Get = %d %q", code, body)
	}
	if code, body := Get(t, srv.URL, "", Bearer("")); code != http.StatusTeapot || body != strings.TrimPrefix(srv.URL, "http://")+"|" {
		t.Errorf("Get without host and token = %d %q", code, body)
	}
}
