package sentinel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"

	"github.com/dataplane/dataplane/schema"
)

// The built-in namespaces a sentinel reads.
const (
	// RoutesNamespace holds one Route per hostname: routes/<hostname>.
	RoutesNamespace = schema.RoutesNamespace
	// KeysNamespace holds one APIKey per hashed key:
	// keys/<keyspace>/<sha256 of the raw key, hex>.
	KeysNamespace = schema.KeysNamespace
)

// Route is the value of routes/<hostname>: where requests for the host go
// and whether they need an API key. See schema.Route.
type Route = schema.Route

// APIKey is the value of keys/<keyspace>/<hash>. The raw key is never
// stored: only its SHA-256. See schema.APIKey.
type APIKey = schema.APIKey

// ErrBadValue means a stored route or key does not parse or breaks a rule.
var ErrBadValue = errors.New("bad stored value")

// ParseRoute decodes and validates a route value (schema.ParseRoute: strict
// JSON, a field given twice or unknown is refused). Errors wrap ErrBadValue
// and name the field.
func ParseRoute(b []byte) (Route, []*url.URL, error) {
	r, us, err := schema.ParseRoute(b)
	if err != nil {
		return Route{}, nil, fmt.Errorf("%w: route: %w", ErrBadValue, err)
	}
	return r, us, nil
}

// ParseAPIKey decodes and validates a key value (schema.ParseAPIKey).
// Errors wrap ErrBadValue and name the field.
func ParseAPIKey(b []byte) (APIKey, error) {
	k, err := schema.ParseAPIKey(b)
	if err != nil {
		return APIKey{}, fmt.Errorf("%w: api key: %w", ErrBadValue, err)
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
