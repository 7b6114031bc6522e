package bearer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRequireScheme(t *testing.T) {
	t.Parallel()
	h := Require("tok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tc := range []struct {
		authz  string
		status int
	}{
		{"Bearer tok", 200},
		{"bearer tok", 200},
		{"BEARER  tok ", 200},
		{"Basic tok", 401},
		{"Bearer", 401},
		{"Bearertok", 401},
		{"Bearer to", 401},
		{"", 401},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", tc.authz)
		rw := httptest.NewRecorder()
		h.ServeHTTP(rw, req)
		if rw.Code != tc.status {
			t.Errorf("Authorization %q: %d, want %d", tc.authz, rw.Code, tc.status)
		}
	}
}
