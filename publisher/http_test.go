package publisher_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

const token = "s3cr3t-admin-token"

type apiClient struct {
	t   *testing.T
	srv *httptest.Server
}

func newAPI(t *testing.T, e *env, tok string) *apiClient {
	srv := httptest.NewServer(publisher.Handler(e.pub, tok))
	t.Cleanup(srv.Close)
	return &apiClient{t: t, srv: srv}
}

// do sends a request with the given bearer token ("" for none) and returns
// the status, headers and body.
func (c *apiClient) do(method, path, tok string, body io.Reader) (int, http.Header, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// errorOf decodes a JSON error body.
func errorOf(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", body, err)
	}
	return e.Error
}

func TestHTTPAuth(t *testing.T) {
	e := newEnv(t, backends[1].open(t), nil)
	api := newAPI(t, e, token)
	cases := []struct {
		name   string
		header string
		status int
		word   string
	}{
		{"missing", "", http.StatusUnauthorized, "missing"},
		{"not bearer", "Basic " + token, http.StatusUnauthorized, "missing"},
		{"empty bearer", "Bearer ", http.StatusUnauthorized, "missing"},
		{"wrong", "Bearer nope", http.StatusUnauthorized, "invalid"},
		{"prefix of the token", "Bearer " + token[:5], http.StatusUnauthorized, "invalid"},
		{"token plus more", "Bearer " + token + "x", http.StatusUnauthorized, "invalid"},
		{"right", "Bearer " + token, http.StatusNotFound, "not found"}, // authenticated; the key is absent
		{"right, lower-case scheme", "bearer " + token, http.StatusNotFound, "not found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", api.srv.URL+"/v1/records/routes/a.example.com", nil)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			resp, err := api.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, body)
			}
			if msg := errorOf(t, body); !strings.Contains(msg, c.word) {
				t.Fatalf("error %q does not mention %q", msg, c.word)
			}
			if c.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// Unauthenticated requests learn nothing, not even which paths exist,
	// and writes are refused.
	if st, _, _ := api.do("PUT", "/v1/records/routes/a", "", strings.NewReader("1")); st != http.StatusUnauthorized {
		t.Fatalf("unauthenticated PUT: %d", st)
	}
	if st, _, _ := api.do("GET", "/nowhere", "wrong", nil); st != http.StatusUnauthorized {
		t.Fatalf("unauthenticated unknown path: %d", st)
	}
	if _, err := e.pub.Get(testCtx(t), "routes", "a"); err == nil {
		t.Fatal("an unauthenticated PUT was written")
	}
	// An empty configured token refuses everyone.
	closed := newAPI(t, e, "")
	if st, _, _ := closed.do("GET", "/v1/export/routes", "anything", nil); st != http.StatusUnauthorized {
		t.Fatalf("handler without a token answered %d", st)
	}
	if strings.Contains(e.logs.String(), token) {
		t.Fatal("the token appears in the logs")
	}
}

func TestHTTPRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		api := newAPI(t, e, token)
		const path = "/v1/records/keys/ks1/0123abcd"
		value := `{"key_id":"k1","enabled":true}`

		st, h, body := api.do("PUT", path, token, strings.NewReader(value))
		if st != http.StatusOK {
			t.Fatalf("PUT: %d %s", st, body)
		}
		var put struct {
			Namespace, Key, Version string
			Tombstone               bool
		}
		if err := json.Unmarshal(body, &put); err != nil || put.Namespace != "keys" || put.Key != "ks1/0123abcd" || put.Version != h.Get(publisher.VersionHeader) {
			t.Fatalf("PUT answer %s (%v)", body, err)
		}

		st, h, body = api.do("GET", path, token, nil)
		if st != http.StatusOK || string(body) != value || h.Get("Content-Type") != "application/json" || h.Get(publisher.VersionHeader) != put.Version {
			t.Fatalf("GET: %d %q %v", st, body, h)
		}
		rec, err := e.pub.Get(testCtx(t), "keys", "ks1/0123abcd")
		if err != nil || string(rec.Value) != value {
			t.Fatalf("stored %+v, %v", rec, err)
		}

		st, _, body = api.do("DELETE", path, token, nil)
		if st != http.StatusOK || !strings.Contains(string(body), `"tombstone":true`) {
			t.Fatalf("DELETE: %d %s", st, body)
		}
		st, _, body = api.do("GET", path, token, nil)
		if st != http.StatusNotFound || !strings.Contains(errorOf(t, body), "deleted") {
			t.Fatalf("GET after DELETE: %d %s", st, body)
		}
		if n := e.notify.records(); len(n) != 2 {
			t.Fatalf("%d notifications for a put and a delete", len(n))
		}

		// Import and export over HTTP.
		in := "{\"namespace\":\"routes\",\"key\":\"a\",\"value\":1}\n{\"namespace\":\"routes\",\"key\":\"\",\"value\":1}\n"
		st, _, body = api.do("POST", "/v1/import", token, strings.NewReader(in))
		var stats publisher.ImportStats
		if err := json.Unmarshal(body, &stats); err != nil || st != http.StatusOK || stats.Written != 1 || stats.Rejected != 1 || stats.Errors[0].Line != 2 {
			t.Fatalf("import: %d %s", st, body)
		}
		st, h, body = api.do("GET", "/v1/export/routes", token, nil)
		if st != http.StatusOK || h.Get("Content-Type") != "application/x-ndjson" || !strings.Contains(string(body), `"key":"a","value":1`) {
			t.Fatalf("export: %d %s", st, body)
		}
	})
}

func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, backends[1].open(t), nil)
	api := newAPI(t, e, token)
	big := bytes.Repeat([]byte("x"), record.MaxValueSize+1)
	cases := []struct {
		name         string
		method, path string
		body         io.Reader
		status       int
		word         string
	}{
		{"oversized value", "PUT", "/v1/records/routes/a", bytes.NewReader(big), http.StatusRequestEntityTooLarge, "limit"},
		{"oversized chunked value", "PUT", "/v1/records/routes/a", io.MultiReader(bytes.NewReader(big)), http.StatusRequestEntityTooLarge, "limit"},
		{"absent key", "GET", "/v1/records/routes/absent", nil, http.StatusNotFound, "not found"},
		{"unknown endpoint", "GET", "/v2/whatever", nil, http.StatusNotFound, "no such endpoint"},
		{"bad namespace", "PUT", "/v1/records/Bad!/a", strings.NewReader("1"), http.StatusBadRequest, "namespace"},
		{"empty key", "PUT", "/v1/records/routes/", strings.NewReader("1"), http.StatusBadRequest, "empty key"},
		{"wrong method", "POST", "/v1/records/routes/a", nil, http.StatusMethodNotAllowed, "not allowed"},
		{"wrong method on import", "GET", "/v1/import", nil, http.StatusMethodNotAllowed, "not allowed"},
		{"bad export namespace", "GET", "/v1/export/NO", nil, http.StatusBadRequest, "namespace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, h, body := api.do(c.method, c.path, token, c.body)
			if st != c.status {
				t.Fatalf("status %d, want %d: %s", st, c.status, body)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Fatalf("error with Content-Type %q", h.Get("Content-Type"))
			}
			if msg := errorOf(t, body); !strings.Contains(msg, c.word) {
				t.Fatalf("error %q does not mention %q", msg, c.word)
			}
		})
	}
	if _, err := e.pub.Get(testCtx(t), "routes", "a"); err == nil {
		t.Fatal("an oversized PUT was written")
	}
	// The largest allowed value is fine.
	if st, _, body := api.do("PUT", "/v1/records/routes/a", token, bytes.NewReader(big[1:])); st != http.StatusOK {
		t.Fatalf("PUT of exactly MaxValueSize: %d %s", st, body)
	}
}
