package schema

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/dataplane/dataplane/record"
)

// The built-in namespaces the sentinel reads.
const (
	// RoutesNamespace holds one Route per hostname: routes/<hostname>.
	RoutesNamespace = "routes"
	// KeysNamespace holds one APIKey per hashed key:
	// keys/<keyspace>/<sha256 of the raw key, hex>.
	KeysNamespace = "keys"
)

// Route is the value of routes/<hostname>: where requests for the host go
// and whether they need an API key.
type Route struct {
	// DeploymentID names the deployment serving the host; passed upstream.
	DeploymentID string `json:"deployment_id"`
	// Upstreams are origins (scheme://host[:port], no path) tried round
	// robin; the request's path and query are kept as they came.
	Upstreams []string `json:"upstreams"`
	// RequireKey makes the sentinel check an API key before proxying.
	RequireKey bool `json:"require_key,omitempty"`
	// Keyspace is where the keys of this route live; required with RequireKey.
	Keyspace string `json:"keyspace,omitempty"`
}

// APIKey is the value of keys/<keyspace>/<hash>. The raw key is never
// stored: only its SHA-256.
type APIKey struct {
	KeyID       string            `json:"key_id"`
	Enabled     bool              `json:"enabled"`
	Expires     *time.Time        `json:"expires,omitempty"`
	Permissions []string          `json:"permissions,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
}

// ParseRoute decodes (strictly, see Unmarshal) and checks a route value:
// at least one upstream, each an http(s) origin without path, query or
// credentials; a keyspace when a key is required. It returns the route
// and its upstreams parsed, without path. Every error is a *FieldError
// naming the field, and never shows an upstream's credentials.
func ParseRoute(b []byte) (Route, []*url.URL, error) {
	var r Route
	if err := Unmarshal(b, &r); err != nil {
		return Route{}, nil, err
	}
	if len(r.Upstreams) == 0 {
		return Route{}, nil, &FieldError{Field: "upstreams", Reason: "at least one upstream is required"}
	}
	if r.RequireKey {
		if r.Keyspace == "" {
			return Route{}, nil, &FieldError{Field: "keyspace", Reason: "required when require_key is true"}
		}
		if err := checkKeyspace(r.Keyspace); err != nil {
			return Route{}, nil, &FieldError{Field: "keyspace", Reason: err.Error()}
		}
	}
	us := make([]*url.URL, 0, len(r.Upstreams))
	for i, s := range r.Upstreams {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			// The error is logged: an upstream that parses is shown
			// without its credentials, one that does not by position.
			shown := "this"
			if err == nil {
				v := *u
				if v.User != nil {
					v.User = url.User("redacted")
				}
				shown = fmt.Sprintf("%q", v.String())
			}
			return Route{}, nil, &FieldError{Field: fmt.Sprintf("upstreams[%d]", i), Reason: shown + " is not an http(s) origin like http://host:port (no path, query or credentials)"}
		}
		u.Path = ""
		us = append(us, u)
	}
	return r, us, nil
}

// ParseAPIKey decodes (strictly, see Unmarshal) and checks a key value: it
// needs a key_id. Every error is a *FieldError naming the field.
func ParseAPIKey(b []byte) (APIKey, error) {
	var k APIKey
	if err := Unmarshal(b, &k); err != nil {
		return APIKey{}, err
	}
	if k.KeyID == "" {
		return APIKey{}, &FieldError{Field: "key_id", Reason: "required"}
	}
	return k, nil
}

// ValidateRoute is the Validator of RoutesNamespace: the key is a host name
// as the sentinel looks it up (lower case, no trailing dot) and the value
// passes ParseRoute.
func ValidateRoute(key string, value []byte) error {
	if key != strings.ToLower(key) || strings.HasSuffix(key, ".") || strings.ContainsAny(key, "/\\ @\t") {
		return fmt.Errorf("key: a route's key is the host name as requests carry it, in lower case, without port or trailing dot")
	}
	_, _, err := ParseRoute(value)
	return err
}

// ValidateAPIKey is the Validator of KeysNamespace: the key is
// <keyspace>/<SHA-256 of the raw key, 64 lower-case hex digits> and the
// value passes ParseAPIKey.
func ValidateAPIKey(key string, value []byte) error {
	i := strings.LastIndexByte(key, '/')
	if i < 0 || checkKeyspace(key[:i]) != nil || !isHash(key[i+1:]) {
		return fmt.Errorf("key: want <keyspace>/<SHA-256 of the raw API key, 64 lower-case hex digits>")
	}
	_, err := ParseAPIKey(value)
	return err
}

// checkKeyspace checks that keys of keyspace ks can be stored.
func checkKeyspace(ks string) error {
	if ks == "" {
		return fmt.Errorf("empty keyspace")
	}
	if err := record.ValidateKey(KeysNamespace, ks+"/"+strings.Repeat("0", 64)); err != nil {
		return fmt.Errorf("keyspace makes invalid keys (%d bytes, at most %d, printable)", len(ks), record.MaxKeyLen-65)
	}
	return nil
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
