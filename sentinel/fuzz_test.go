package sentinel_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/sentinel"
)

// FuzzParseValues decodes arbitrary bytes as a route and as an API key, as
// the gateway does with values from the origin and gossip. It never panics;
// a route it accepts has only http(s) upstreams with a host and no
// credentials; every error wraps ErrBadValue and never shows an upstream's
// credentials (the error is logged).
func FuzzParseValues(f *testing.F) {
	for _, s := range []string{
		`{"deployment_id":"dep_1","upstreams":["http://127.0.0.1:8080","https://up.example.com/"],"require_key":true,"keyspace":"ks"}`,
		`{"upstreams":[]}`,
		`{"upstreams":["ftp://x"]}`,
		`{"upstreams":["http://user:pass_SECRET@up.example.com"]}`,
		`{"upstreams":["http://token_SECRET@up.example.com"]}`,
		`{"upstreams":["http://up.example.com/path?q=1"]}`,
		`{"upstreams":["http://%zz"]}`,
		`{"upstreams":["http://up"],"require_key":true}`,
		`{"key_id":"k1","enabled":true,"expires":"2030-01-01T00:00:00Z","permissions":["read"],"meta":{"team":"a"}}`,
		`{"key_id":"","enabled":true}`,
		`{"key_id":"k","expires":"not a time"}`,
		`null`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, urls, err := sentinel.ParseRoute(b)
		if err != nil {
			if !errors.Is(err, sentinel.ErrBadValue) {
				t.Fatalf("ParseRoute error %v does not wrap ErrBadValue", err)
			}
			for _, c := range credentials(b) {
				if strings.Contains(err.Error(), c) {
					t.Fatalf("ParseRoute error shows the credential %q: %v", c, err)
				}
			}
		} else {
			if len(urls) == 0 || len(urls) != len(r.Upstreams) {
				t.Fatalf("route with %d upstreams, %d URLs", len(r.Upstreams), len(urls))
			}
			for _, u := range urls {
				if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Path != "" {
					t.Fatalf("accepted upstream %s", (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
				}
			}
			if r.RequireKey && r.Keyspace == "" {
				t.Fatal("accepted a route requiring a key without a keyspace")
			}
		}
		k, err := sentinel.ParseAPIKey(b)
		if err != nil {
			if !errors.Is(err, sentinel.ErrBadValue) {
				t.Fatalf("ParseAPIKey error %v does not wrap ErrBadValue", err)
			}
		} else if k.KeyID == "" {
			t.Fatal("accepted a key without key_id")
		}
	})
}

// credentials returns the user names and passwords in the upstream URLs of
// route value b, in the forms they take inside a URL ("user@", ":pass@").
func credentials(b []byte) []string {
	var r sentinel.Route
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	var out []string
	for _, s := range r.Upstreams {
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			continue
		}
		// Credentials of one or two characters are left out: "e:" is in
		// any error that says "case-sensitive: ..." without showing one.
		if n := u.User.Username(); len(n) >= 3 && n != "redacted" {
			out = append(out, n+"@", n+":")
		}
		if p, ok := u.User.Password(); ok && len(p) >= 3 {
			out = append(out, ":"+p+"@")
		}
	}
	return out
}

// TestParseRouteHidesCredentials: a route whose upstream carries credentials
// is refused, and the error (which the gateway logs) does not show them.
func TestParseRouteHidesCredentials(t *testing.T) {
	t.Parallel()
	for _, up := range []string{"http://user:pass_SECRET@up.example.com", "https://tok_SECRET@up.example.com:8443/"} {
		_, _, err := sentinel.ParseRoute([]byte(`{"upstreams":["` + up + `"]}`))
		if !errors.Is(err, sentinel.ErrBadValue) || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), "up.example.com") {
			t.Errorf("upstream %s: error %v, want ErrBadValue naming the host without the credentials", up, err)
		}
	}
}
