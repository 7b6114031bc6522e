package cachenode_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

func TestPutRecord(t *testing.T) {
	f := newFixture(t, nil)
	r1 := record.Record{Namespace: "keys", Key: "ks/abc", Value: []byte("one"), Version: 100}
	path := wire.RecordPath(r1.Namespace, r1.Key)
	resp, body := f.do("PUT", path+"?prev=0", auth, marshal(t, r1))
	if resp.StatusCode != 204 || resp.Header.Get("ETag") != wire.ETag(100) {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	// Read-your-writes from the node's cache, without an origin read.
	resp, body = f.do("GET", path, nil, nil)
	if got, _ := record.Unmarshal(body); resp.StatusCode != 200 || got.Version != 100 {
		t.Fatalf("GET after PUT: %d %+v", resp.StatusCode, got)
	}
	if n := f.origin.gets.Load(); n != 0 {
		t.Fatalf("GET after PUT read the origin %d times; the write should have been cached", n)
	}
	if got, err := f.dir.Get(context.Background(), "keys", "ks/abc", 0); err != nil || got.Version != 100 {
		t.Fatalf("origin after PUT: %+v %v", got, err)
	}

	r2 := r1
	r2.Version, r2.Value = 200, []byte("two")
	for _, tc := range []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		body   []byte
		status int
		code   wire.Code
		says   string
	}{
		{"stale prev", "PUT", path + "?prev=0", auth, marshal(t, r2), 409, wire.CodeConflict, "ks/abc"},
		{"no token", "PUT", path + "?prev=64", nil, marshal(t, r2), 401, "", "token"},
		{"wrong token", "PUT", path + "?prev=64", map[string]string{"Authorization": "Bearer nope"}, marshal(t, r2), 401, "", "token"},
		{"missing prev", "PUT", path, auth, marshal(t, r2), 400, wire.CodeInvalid, "prev"},
		{"bad prev", "PUT", path + "?prev=xyz", auth, marshal(t, r2), 400, wire.CodeInvalid, "prev"},
		{"malformed body", "PUT", path + "?prev=64", auth, []byte("DR\x01\x00not a record"), 400, wire.CodeInvalid, "corrupt"},
		{"flipped bit", "PUT", path + "?prev=64", auth, flip(marshal(t, r2)), 400, wire.CodeInvalid, "checksum"},
		{"other key in body", "PUT", wire.RecordPath("keys", "other") + "?prev=0", auth, marshal(t, r2), 400, wire.CodeInvalid, "path names keys/other"},
		{"version not above prev", "PUT", path + "?prev=c8", auth, marshal(t, r2), 400, wire.CodeInvalid, "greater"},
		{"oversized", "PUT", path + "?prev=64", auth, make([]byte, record.MaxEncodedSize+1), 413, wire.CodeTooLarge, "limit"},
		{"wrong method", "DELETE", path, auth, nil, 405, wire.CodeNoRoute, "GET, PUT"},
		{"no route", "GET", "/v2/whatever", nil, nil, 404, wire.CodeNoRoute, "/v2/whatever"},
	} {
		resp, body := f.do(tc.method, tc.path, tc.hdr, tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, resp.StatusCode, body, tc.status, tc.says)
			continue
		}
		if code := errorCode(t, body); tc.code != "" && code != tc.code {
			t.Errorf("%s: code %q, want %q", tc.name, code, tc.code)
		}
	}
	if got, _ := f.dir.Get(context.Background(), "keys", "ks/abc", 0); got.Version != 100 {
		t.Fatalf("a rejected write changed the origin: %+v", got)
	}
}

func flip(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }

// An oversized body without Content-Length (chunked) is cut off at the limit.
func TestPutChunkedOversized(t *testing.T) {
	f := newFixture(t, nil)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 8; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", f.srv.URL+wire.RecordPath("a", "b")+"?prev=0", pr)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pr.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversized body: %d, want 413", resp.StatusCode)
	}
}

func TestWritesDisabledWithoutToken(t *testing.T) {
	f := newFixture(t, func(c *cachenode.Config) { c.WriteToken = "" })
	r := record.Record{Namespace: "a", Key: "b", Version: 1}
	resp, body := f.do("PUT", wire.RecordPath("a", "b")+"?prev=0", map[string]string{"Authorization": "Bearer "}, marshal(t, r))
	if resp.StatusCode != 403 {
		t.Fatalf("write on a node without a write token: %d %s, want 403", resp.StatusCode, body)
	}
}

func TestReadToken(t *testing.T) {
	f := newFixture(t, func(c *cachenode.Config) { c.ReadToken = "reader" })
	f.put(record.Record{Namespace: "a", Key: "b", Version: 1})
	if resp, _ := f.do("GET", wire.RecordPath("a", "b"), nil, nil); resp.StatusCode != 401 {
		t.Fatalf("read without the read token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := f.do("GET", wire.RecordPath("a", "b"), map[string]string{"Authorization": "Bearer reader"}, nil); resp.StatusCode != 200 {
		t.Fatalf("read with the read token: %d, want 200", resp.StatusCode)
	}
}

// A lost compare-and-swap shows the node's copy is outdated when it held
// prev: the copy is invalidated, so a writer reading through the node sees
// the current version and can win on its next try.
func TestConflictInvalidatesHeldCopy(t *testing.T) {
	f := newFixture(t, nil)
	f.put(record.Record{Namespace: "cfg", Key: "k", Value: []byte("1"), Version: 1})
	f.do("GET", wire.RecordPath("cfg", "k"), nil, nil)
	f.put(record.Record{Namespace: "cfg", Key: "k", Value: []byte("2"), Version: 2}) // another writer, straight to the origin
	resp, _ := f.do("PUT", wire.RecordPath("cfg", "k")+"?prev=1", auth, marshal(t, record.Record{Namespace: "cfg", Key: "k", Value: []byte("3"), Version: 3}))
	if resp.StatusCode != 409 {
		t.Fatalf("PUT over a newer origin version: %d, want 409", resp.StatusCode)
	}
	_, body := f.do("GET", wire.RecordPath("cfg", "k"), nil, nil)
	if got, _ := record.Unmarshal(body); got.Version != 2 {
		t.Fatalf("after a conflict the node still serves version %d, want 2", got.Version)
	}
}
