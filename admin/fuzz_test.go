package admin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const fuzzToken = "admin-fuzz-token"

func fuzzHandler() http.Handler {
	return Handler(Config{
		Gatherer: prometheus.NewRegistry(),
		Token:    fuzzToken,
		Inspect: func(ns, key string) (Inspection, bool) {
			return Inspection{Namespace: ns, Key: key, Version: 7}, key == "a.example.com"
		},
		Members: func() any { return []string{"node-1"} },
	})
}

// FuzzHandler sends arbitrary requests to the admin handler: it never
// panics, never fails with a 5xx, and a debug endpoint never answers 200
// without the exact token.
func FuzzHandler(f *testing.F) {
	f.Add("GET", "/healthz", "", []byte(nil))
	f.Add("GET", "/readyz", "", []byte(nil))
	f.Add("GET", "/metrics", "", []byte(nil))
	f.Add("GET", "/debug/records/routes/a.example.com", "Bearer "+fuzzToken, []byte(nil))
	f.Add("GET", "/debug/records/routes/a.example.com", "Bearer "+fuzzToken+"x", []byte(nil))
	f.Add("GET", "/debug/records/routes/a.example.com", "bearer "+fuzzToken, []byte(nil))
	f.Add("GET", "/debug/members", "Bearer "+fuzzToken, []byte(nil))
	f.Add("GET", "/debug/members", "Bearer ", []byte(nil))
	f.Add("POST", "/debug/members", "Bearer "+fuzzToken, []byte(`{"x":1}`))
	f.Add("DELETE", "/debug/records/BAD/%00", "Bearer "+fuzzToken, []byte(nil))
	f.Add("GET", "/debug/records/routes/../../etc/passwd", "Bearer "+fuzzToken, []byte(nil))
	f.Add("PUT", "/healthz", "", bytes.Repeat([]byte("x"), 100))
	h := fuzzHandler()
	f.Fuzz(func(t *testing.T, method, path, authz string, body []byte) {
		if !validMethod(method) {
			return
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
		req.Method, req.URL, req.RequestURI = method, u, path
		req.Header.Set("Authorization", authz)
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, req)
		if rw.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", method, path, rw.Code, rw.Body)
		}
		scheme, got, _ := strings.Cut(authz, " ")
		hasToken := strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(got) == fuzzToken
		if rw.Code == http.StatusOK && strings.HasPrefix(u.Path, "/debug/") && !hasToken {
			t.Fatalf("%s %q with Authorization %q: 200 without the token", method, path, authz)
		}
	})
}

// validMethod reports whether m is a token, as net/http requires of a
// method on the wire.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func TestLimitBody(t *testing.T) {
	t.Parallel()
	h := fuzzHandler()
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"no body", 0, http.StatusOK},
		{"small body", 100, http.StatusOK},
		{"at the limit", MaxRequestBody, http.StatusOK},
		{"over the limit", MaxRequestBody + 1, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/healthz", bytes.NewReader(make([]byte, tc.size)))
			rw := httptest.NewRecorder()
			h.ServeHTTP(rw, req)
			if rw.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rw.Code, tc.status, rw.Body)
			}
		})
	}
}
