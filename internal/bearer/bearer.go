// Package bearer guards HTTP endpoints with a bearer token: the admin
// listener's debug views, the cache node's reads and writes, a node's peer
// snapshot and watch endpoints.
package bearer

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// Require wraps h so that it answers only requests carrying
// "Authorization: Bearer <token>"; the comparison takes constant time. An
// empty token refuses every request (403): an endpoint is never open by
// accident. A refusal is JSON, {"error": reason}.
func Require(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token == "" {
			refuse(w, http.StatusForbidden, "endpoint disabled: no admin token configured")
			return
		}
		// The scheme is case-insensitive (RFC 9110), as at the gateway and
		// the publisher API.
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer")
		got = strings.TrimSpace(got)
		// Hashing both sides first makes the comparison constant-time
		// whatever the lengths.
		g := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(g[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dataplane"`)
			refuse(w, http.StatusUnauthorized, "missing or wrong admin token")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// refuse answers status with {"error": reason}.
func refuse(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{reason})
}
