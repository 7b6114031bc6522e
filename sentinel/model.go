package sentinel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// The built-in namespaces a sentinel reads.
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

// ErrBadValue means a stored route or key does not parse or breaks a rule.
var ErrBadValue = errors.New("bad stored value")

// ParseRoute decodes and validates a route value.
func ParseRoute(b []byte) (Route, []*url.URL, error) {
	var r Route
	if err := json.Unmarshal(b, &r); err != nil {
		return Route{}, nil, fmt.Errorf("%w: route: %w", ErrBadValue, err)
	}
	if len(r.Upstreams) == 0 {
		return Route{}, nil, fmt.Errorf("%w: route has no upstreams", ErrBadValue)
	}
	if r.RequireKey && r.Keyspace == "" {
		return Route{}, nil, fmt.Errorf("%w: route requires a key but names no keyspace", ErrBadValue)
	}
	us := make([]*url.URL, 0, len(r.Upstreams))
	for _, s := range r.Upstreams {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			// The error is logged: an upstream that parses is shown
			// without its credentials, one that does not by position.
			shown := fmt.Sprintf("#%d", len(us)+1)
			if err == nil {
				v := *u
				if v.User != nil {
					v.User = url.User("redacted")
				}
				shown = fmt.Sprintf("%q", v.String())
			}
			return Route{}, nil, fmt.Errorf("%w: route upstream %s is not an http(s) origin like http://host:port", ErrBadValue, shown)
		}
		u.Path = ""
		us = append(us, u)
	}
	return r, us, nil
}

// ParseAPIKey decodes and validates a key value.
func ParseAPIKey(b []byte) (APIKey, error) {
	var k APIKey
	if err := json.Unmarshal(b, &k); err != nil {
		return APIKey{}, fmt.Errorf("%w: api key: %w", ErrBadValue, err)
	}
	if k.KeyID == "" {
		return APIKey{}, fmt.Errorf("%w: api key has no key_id", ErrBadValue)
	}
	return k, nil
}

// HashKey returns the hex SHA-256 of a raw API key: the only form in which
// a key is stored, logged or looked up.
func HashKey(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:])
}

// KeyRecordKey returns the key, within KeysNamespace, of a raw API key.
func KeyRecordKey(keyspace, raw string) string {
	return keyspace + "/" + HashKey(raw)
}
