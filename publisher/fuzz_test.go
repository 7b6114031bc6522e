package publisher_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/publisher"
)

// fuzzRequest builds a request from fuzzer input, or reports false for input
// net/http would never hand a handler (a method or target that does not
// parse).
func fuzzRequest(method, target string, body []byte) (*http.Request, bool) {
	if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || strings.IndexFunc(method, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || !strings.HasPrefix(target, "/") {
		return nil, false
	}
	req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
	req.Method, req.URL, req.RequestURI = method, u, target
	return req, true
}

// FuzzHandler sends arbitrary requests to the publisher API over an
// in-memory store. It never panics or fails with a 5xx; without the exact
// token nothing is written; a refused PUT or DELETE writes nothing; an
// accepted PUT stores exactly the body.
func FuzzHandler(f *testing.F) {
	f.Add("PUT", "/v1/records/routes/a.example.com", true, []byte(`{"upstreams":["http://127.0.0.1:1"]}`))
	f.Add("PUT", "/v1/records/routes/a.example.com", false, []byte(`{"x":1}`))
	f.Add("PUT", "/v1/records/BAD/a", true, []byte(`{}`))
	f.Add("PUT", "/v1/records/routes/", true, []byte(`{}`))
	f.Add("PUT", "/v1/records/routes/a%00b", true, []byte(`{}`))
	f.Add("GET", "/v1/records/routes/a.example.com", true, []byte(nil))
	f.Add("DELETE", "/v1/records/routes/a.example.com", true, []byte(nil))
	f.Add("DELETE", "/v1/records/routes/a.example.com", false, []byte(nil))
	f.Add("POST", "/v1/import", true, []byte("{\"namespace\":\"routes\",\"key\":\"b\",\"value\":{\"u\":1}}\n{\"namespace\":\"routes\",\"key\":\"c\",\"delete\":true}\nnot json\n"))
	f.Add("POST", "/v1/import", false, []byte("{\"namespace\":\"routes\",\"key\":\"b\",\"value\":1}\n"))
	f.Add("GET", "/v1/export/routes", true, []byte(nil))
	f.Add("PATCH", "/v1/records/routes/a", true, []byte(nil))
	f.Add("GET", "/../../etc/passwd", true, []byte(nil))
	f.Fuzz(func(t *testing.T, method, target string, withToken bool, body []byte) {
		req, ok := fuzzRequest(method, target, body)
		if !ok {
			return
		}
		store := &origintest.WriteCounter{Store: mem.New()}
		cfg := publisher.DefaultConfig()
		cfg.Logger = slog.New(slog.DiscardHandler)
		p, err := publisher.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		} else {
			req.Header.Set("Authorization", "Bearer not-"+token)
		}
		rw := httptest.NewRecorder()
		publisher.Handler(p, token).ServeHTTP(rw, req)
		writes := store.Writes.Load()
		switch {
		case rw.Code >= 500:
			t.Fatalf("%s %q: status %d: %s", method, target, rw.Code, rw.Body)
		case !withToken && (rw.Code != http.StatusUnauthorized || writes != 0):
			t.Fatalf("%s %q without the token: status %d, %d writes", method, target, rw.Code, writes)
		case rw.Code >= 400 && (method == "PUT" || method == "DELETE") && writes != 0:
			t.Fatalf("%s %q refused with %d, yet %d writes reached the store", method, target, rw.Code, writes)
		case rw.Code == http.StatusOK && method == "PUT":
			ns, key, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v1/records/"), "/")
			got, err := store.Get(context.Background(), ns, key, 0)
			if err != nil || !bytes.Equal(got.Value, body) || got.Tombstone {
				t.Fatalf("PUT %q answered 200, but the store holds %+v, %v", target, got, err)
			}
		}
	})
}

// FuzzImport feeds arbitrary JSON Lines to Import: it never panics, counts
// every line once, writes only valid records, and writes at most one record
// per accepted line.
func FuzzImport(f *testing.F) {
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"a.example.com\",\"value\":{\"upstreams\":[\"http://127.0.0.1:1\"]}}\n"))
	f.Add([]byte("{\"namespace\":\"keys\",\"key\":\"ks/abc\",\"value\":{\"key_id\":\"k\",\"enabled\":true}}\n{\"namespace\":\"keys\",\"key\":\"ks/abc\",\"delete\":true}\n"))
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"a\",\"value\":\"text\"}\r\n\n   \n"))
	f.Add([]byte("{\"namespace\":\"BAD\",\"key\":\"a\",\"value\":1}\n"))
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"\",\"value\":1}\n"))
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"a\"}\n"))
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"a\",\"value\":1,\"delete\":true}\n"))
	f.Add([]byte("{\"namespace\":\"routes\",\"key\":\"a\",\"value\":1,\"extra\":2}\n"))
	f.Add([]byte("[1,2,3]\nnull\n\"s\"\n{\n"))
	f.Add([]byte("\xff\xfe{\"namespace\":\"routes\"}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		store := &origintest.WriteCounter{Store: mem.New()}
		cfg := publisher.DefaultConfig()
		cfg.Logger = slog.New(slog.DiscardHandler)
		p, err := publisher.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.Import(context.Background(), bytes.NewReader(in), nil)
		if err != nil {
			t.Fatalf("Import over a memory store failed: %v", err)
		}
		if st.Written+st.Unchanged+st.Rejected > st.Lines {
			t.Fatalf("stats %+v count more outcomes than lines", st)
		}
		// Each written record is one CompareAndSwap and one log append.
		if w := store.Writes.Load(); w > 2*int64(st.Written) {
			t.Fatalf("%d writes for %d written lines", w, st.Written)
		}
		cs, err := store.ReadLog(context.Background(), 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			rec, err := store.Get(context.Background(), c.Namespace, c.Key, 0)
			if err != nil {
				t.Fatalf("the log names %s/%s, the store does not hold it: %v", c.Namespace, c.Key, err)
			}
			if err := rec.Validate(); err != nil {
				t.Fatalf("an invalid record was written: %v", err)
			}
		}
	})
}
