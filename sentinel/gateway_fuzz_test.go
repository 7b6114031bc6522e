package sentinel

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/record"
)

const fuzzGoodKey = "sk_fuzz_good_0123456789"

// echoUpstream answers with what the gateway forwarded: the key id and
// whether an Authorization header reached it.
func echoUpstream(tb testing.TB) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "1")
		w.Header().Set("X-Saw-Key-Id", r.Header.Get("X-Dataplane-Key-Id"))
		w.Header().Set("X-Saw-Authorization", r.Header.Get("Authorization"))
	}))
	tb.Cleanup(s.Close)
	return s
}

func fuzzGateway(tb testing.TB, upstreamURL string) *Gateway {
	src := &mapSource{m: map[string]record.Record{}}
	put := func(ns, key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		src.m[ns+"/"+key] = record.Record{Namespace: ns, Key: key, Value: b, Version: 1}
	}
	put(RoutesNamespace, "open.example.com", Route{Upstreams: []string{upstreamURL}})
	put(RoutesNamespace, "api.example.com", Route{Upstreams: []string{upstreamURL}, RequireKey: true, Keyspace: "ks"})
	put(KeysNamespace, KeyRecordKey("ks", fuzzGoodKey), APIKey{KeyID: "key_good", Enabled: true})
	put(KeysNamespace, KeyRecordKey("ks", "sk_fuzz_off"), APIKey{KeyID: "key_off", Enabled: false})
	g, err := New(Config{Source: src, Now: func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// FuzzGateway sends requests with arbitrary Host, path, Authorization and
// key-id headers through the gateway. It never panics or answers 500; a
// request reaches the upstream of a keyed route only with the good key; the
// upstream never sees an Authorization header of a keyed route, and never a
// key id the gateway did not verify.
func FuzzGateway(f *testing.F) {
	f.Add("api.example.com", "/", "Bearer "+fuzzGoodKey, "")
	f.Add("api.example.com", "/", "bearer  "+fuzzGoodKey+" ", "")
	f.Add("api.example.com", "/", "Bearer sk_fuzz_off", "")
	f.Add("api.example.com", "/", "Bearer "+fuzzGoodKey+"x", "key_good")
	f.Add("API.Example.COM.", "/x?y=1", "Bearer "+fuzzGoodKey, "")
	f.Add("api.example.com:443", "/", "Basic "+fuzzGoodKey, "")
	f.Add("open.example.com", "/", "", "key_good")
	f.Add("open.example.com", "/", "Bearer whatever", "")
	f.Add("nowhere.example.com", "/", "", "")
	f.Add("", "/", "", "")
	f.Add("[::1]:80", "//a/../b", "", "")
	up := echoUpstream(f)
	g := fuzzGateway(f, up.URL)
	f.Fuzz(func(t *testing.T, host, target, authz, keyID string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL, req.RequestURI, req.Host = u, target, host
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if keyID != "" {
			req.Header.Set("X-Dataplane-Key-Id", keyID)
		}
		rw := httptest.NewRecorder()
		g.ServeHTTP(rw, req)
		res := rw.Result()
		io.Copy(io.Discard, res.Body)
		if res.StatusCode == http.StatusInternalServerError {
			t.Fatalf("Host %q %q: 500", host, target)
		}
		if res.Header.Get("X-Upstream") != "1" {
			return
		}
		sawID, sawAuthz := res.Header.Get("X-Saw-Key-Id"), res.Header.Get("X-Saw-Authorization")
		h, _ := normalizeHost(host)
		if h == "api.example.com" {
			scheme, raw, _ := strings.Cut(authz, " ")
			if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) != fuzzGoodKey {
				t.Fatalf("Host %q with Authorization %q reached the upstream of a keyed route", host, authz)
			}
			if sawAuthz != "" {
				t.Fatalf("the upstream saw the Authorization header %q", sawAuthz)
			}
			if sawID != "key_good" {
				t.Fatalf("the upstream saw key id %q, want key_good", sawID)
			}
		} else if sawID != "" {
			t.Fatalf("Host %q: the upstream of an open route saw the unverified key id %q", host, sawID)
		}
	})
}

// TestKeyIDHeaderNotSpoofable: the key id header reaching an upstream is
// always the one the gateway verified, never the client's.
func TestKeyIDHeaderNotSpoofable(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t)
	g := fuzzGateway(t, up.URL)
	for _, tc := range []struct {
		name, host, authz, spoofed, want string
	}{
		{"open route", "open.example.com", "", "key_good", ""},
		{"open route with a key", "open.example.com", "Bearer " + fuzzGoodKey, "key_admin", ""},
		{"keyed route", "api.example.com", "Bearer " + fuzzGoodKey, "key_admin", "key_good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Host = tc.host
			req.Header.Set("X-Dataplane-Key-Id", tc.spoofed)
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			rw := httptest.NewRecorder()
			g.ServeHTTP(rw, req)
			if rw.Code != http.StatusOK || rw.Header().Get("X-Upstream") != "1" {
				t.Fatalf("status %d, not from the upstream: %s", rw.Code, rw.Body)
			}
			if got := rw.Header().Get("X-Saw-Key-Id"); got != tc.want {
				t.Fatalf("the upstream saw key id %q, want %q", got, tc.want)
			}
		})
	}
}
