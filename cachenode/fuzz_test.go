package cachenode_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/origin/origintest"
	"github.com/dataplane/dataplane/record"
)

// partsCounter is origintest.WriteCounter over a store with snapshot
// parts (checkpoints), which the node serves: reads pass, writes count.
type partsCounter struct {
	*origintest.WriteCounter
	parts origin.SnapshotParts
}

func (w partsCounter) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	return w.parts.GetSnapshotPart(ctx, ns, name)
}

func (w partsCounter) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	w.Writes.Add(1)
	return w.parts.PutSnapshotPart(ctx, ns, name, b)
}

func (w partsCounter) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	w.Writes.Add(1)
	return w.parts.DeleteSnapshotPart(ctx, ns, name)
}

// refusedBeforeOrigin are the statuses a node answers without asking the
// origin: a request answered with one of them must not have written.
var refusedBeforeOrigin = map[int]bool{
	http.StatusBadRequest: true, http.StatusUnauthorized: true, http.StatusForbidden: true,
	http.StatusMethodNotAllowed: true, http.StatusRequestEntityTooLarge: true,
}

// FuzzHandler sends arbitrary requests to a cache node over an in-memory
// origin. It never panics; a 5xx comes only with a cachenode error code; a
// request without the write token, or refused as bad input, writes nothing
// to the origin; an accepted record PUT leaves exactly the body's record in
// the origin.
func FuzzHandler(f *testing.F) {
	rec := record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte(`{"u":1}`), Version: 0x10000}
	rb, _ := record.Marshal(rec)
	sb, _ := record.MarshalSnapshot(record.Snapshot{Namespace: "routes", Version: 0x10000, Records: []record.Record{rec}})
	path := wire.RecordPath(rec.Namespace, rec.Key)
	f.Add("PUT", path+"?prev=0", true, rb)
	f.Add("PUT", path+"?prev=0", false, rb)
	f.Add("PUT", path+"?prev=zz", true, rb)
	f.Add("PUT", wire.RecordPath("routes", "other")+"?prev=0", true, rb)
	f.Add("PUT", path+"?prev=0", true, rb[:len(rb)/2])
	f.Add("GET", path, false, []byte(nil))
	f.Add("GET", path, false, []byte("ignored body"))
	f.Add("POST", wire.LogPath, true, []byte(`{"namespace":"routes","key":"a.example.com","version":"0000000000010000"}`))
	f.Add("POST", wire.LogPath, true, []byte(`{"namespace":"routes","key":"a","version":"1","extra":1}`))
	f.Add("POST", wire.LogPath, false, []byte(`{"namespace":"routes","key":"a","version":"1"}`))
	f.Add("GET", wire.LogPath+"?after=0&limit=10", false, []byte(nil))
	f.Add("GET", wire.LogPath+"?after=-1&limit=x", false, []byte(nil))
	f.Add("POST", wire.TrimPath+"?before=ffffffffffffffff", true, []byte(nil))
	f.Add("POST", wire.TrimPath+"?before=ffffffffffffffff", false, []byte(nil))
	f.Add("PUT", wire.SnapshotPath("routes"), true, sb)
	f.Add("PUT", wire.SnapshotPath("keys"), true, sb)
	f.Add("GET", wire.SnapshotPath("routes"), false, []byte(nil))
	f.Add("GET", wire.SnapshotPartPath("routes", "checkpoint"), false, []byte(nil))
	f.Add("GET", wire.SnapshotPartPath("routes", "ckpt-0000000000010000"), false, []byte(nil))
	f.Add("DELETE", path, true, []byte(nil))
	f.Add("GET", "/v1/records/%2e%2e/%2e%2e", false, []byte(nil))

	// The origin holds a checkpoint of routes and its proof, so the
	// checkpoint routes answer too.
	at := time.Unix(1_700_000_000, 0)
	ck := &checkpoint.Checkpoint{Namespace: "routes", Version: 0x10000, IssuedAt: at, ExpiresAt: at.Add(time.Minute), Count: 1}
	m := mem.New()
	if err := checkpoint.PutLatest(context.Background(), m, ck); err != nil {
		f.Fatal(err)
	}
	if err := checkpoint.PutProof(context.Background(), m, &checkpoint.SnapshotProof{Checkpoint: ck}); err != nil {
		f.Fatal(err)
	}
	counter := &origintest.WriteCounter{Store: m}
	store := partsCounter{counter, m}
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = store, token, slog.New(slog.DiscardHandler)
	node, err := cachenode.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(node.Close)
	f.Fuzz(func(t *testing.T, method, target string, withToken bool, body []byte) {
		req, ok := fuzzRequest(method, target, body)
		if !ok {
			return
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		before := store.Writes.Load()
		rw := httptest.NewRecorder()
		node.ServeHTTP(rw, req)
		writes := store.Writes.Load() - before
		isWrite := method == "PUT" || method == "POST"
		switch {
		case rw.Code >= 500 && !strings.Contains(rw.Body.String(), `"code":`):
			t.Fatalf("%s %q: status %d without an error code: %s", method, target, rw.Code, rw.Body)
		case isWrite && !withToken && writes != 0:
			t.Fatalf("%s %q without the token: status %d, %d writes", method, target, rw.Code, writes)
		case refusedBeforeOrigin[rw.Code] && writes != 0:
			t.Fatalf("%s %q refused with %d, yet %d writes reached the origin", method, target, rw.Code, writes)
		case rw.Code == http.StatusOK && rw.Header().Get("Content-Type") == wire.ContentTypeSnapshotPart:
			// Only what the origin holds: the checkpoint and its proof.
			if _, err := checkpoint.Unmarshal(rw.Body.Bytes()); err != nil {
				if _, perr := checkpoint.UnmarshalProof(rw.Body.Bytes()); perr != nil {
					t.Fatalf("%s %q: served a part that is neither a checkpoint (%v) nor a proof (%v)", method, target, err, perr)
				}
			}
		case rw.Code == http.StatusNoContent && method == "PUT" && strings.HasPrefix(req.URL.Path, wire.RecordsPrefix):
			sent, err := record.Unmarshal(body)
			if err != nil {
				t.Fatalf("PUT %q accepted a body that does not decode: %v", target, err)
			}
			got, err := store.Get(context.Background(), sent.Namespace, sent.Key, 0)
			if err != nil || got.Version < sent.Version {
				t.Fatalf("PUT %q answered 204, but the origin holds %+v, %v", target, got, err)
			}
		}
	})
}

// fuzzRequest builds a request from fuzzer input, or reports false for input
// net/http would never hand a handler (a method or target that does not
// parse).
func fuzzRequest(method, target string, body []byte) (*http.Request, bool) {
	if method == "" || strings.ContainsAny(method, "()<>@,;:\\\"/[]?={}") || strings.IndexFunc(method, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || !strings.HasPrefix(target, "/") {
		return nil, false
	}
	req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
	req.Method, req.URL, req.RequestURI = method, u, target
	req.ContentLength = int64(len(body))
	return req, true
}
