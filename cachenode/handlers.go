package cachenode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// bufPool recycles record encoding buffers across responses.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// getRecord answers GET /v1/records/{ns}/{key...} from the cache.
func (s *Server) getRecord(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PathValue("ns"), r.PathValue("key")
	if err := record.ValidateKey(ns, key); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, err.Error())
		return
	}
	var ifNewer record.Version
	conditional := false
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		v, err := wire.ParseETag(inm)
		if err != nil {
			writeError(w, http.StatusBadRequest, wire.CodeInvalid, "If-None-Match: "+err.Error())
			return
		}
		ifNewer, conditional = v, true
	}
	get := s.cache.Get
	if mustRevalidate(r.Header) {
		// The client keeps its own fresh window from this answer: a copy
		// past ours is read again first, not passed on as current.
		get = s.cache.GetRevalidated
	}
	ent, err := get(r.Context(), ns, key)
	switch {
	case err == nil:
	case errors.Is(err, origin.ErrNotFound) && ent.Record.Version > 0:
		// A tombstone: answered as a record, so the client learns the
		// version of the deletion.
	case errors.Is(err, origin.ErrNotFound):
		writeError(w, http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("%s/%s: %v", ns, key, origin.ErrNotFound))
		return
	default:
		if errors.Is(err, record.ErrInvalid) && !errors.Is(err, record.ErrCorrupt) {
			// The key was checked above: an invalid record came from the
			// origin, which makes it a corrupt object.
			err = fmt.Errorf("%w: %v", record.ErrCorrupt, err)
		}
		s.fail(w, r, "get "+ns+"/"+key, err)
		return
	}
	rec := ent.Record
	h := w.Header()
	h.Set("ETag", wire.ETag(rec.Version))
	h.Set("Age", strconv.FormatInt(int64(max(ent.Age, 0)/time.Second), 10))
	h.Set("Cache-Control", "no-cache")
	if ent.Stale {
		h.Set(wire.HeaderStale, "1")
		s.metrics.stale.Inc()
	}
	if conditional && rec.Version <= ifNewer {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	bp := bufPool.Get().(*[]byte)
	b := record.AppendRecord((*bp)[:0], rec) // valid: the cache validated it
	h.Set("Content-Type", wire.ContentTypeRecord)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	*bp = b
	bufPool.Put(bp)
}

// putRecord forwards PUT /v1/records/{ns}/{key...}?prev= to the origin's
// CompareAndSwap and applies a success to the cache.
func (s *Server) putRecord(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PathValue("ns"), r.PathValue("key")
	if err := record.ValidateKey(ns, key); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, err.Error())
		return
	}
	prev, ok := versionParam(w, r, "prev", true)
	if !ok {
		return
	}
	body, ok := readBody(w, r, record.MaxEncodedSize)
	if !ok {
		return
	}
	rec, err := record.Unmarshal(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("body of PUT %s/%s: %v", ns, key, err))
		return
	}
	if rec.Namespace != ns || rec.Key != key {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("body holds %s/%s, path names %s/%s", rec.Namespace, rec.Key, ns, key))
		return
	}
	// The write runs to its end even if the client goes away, so the cache
	// always learns what the origin stored.
	ctx, cancel := s.originContext(r)
	defer cancel()
	if err := s.origin.CompareAndSwap(ctx, rec, prev); err != nil {
		if errors.Is(err, origin.ErrConflict) {
			s.conflicted(ns, key, prev)
		}
		s.fail(w, r, "put "+ns+"/"+key, err)
		return
	}
	s.cache.Apply(rec)
	w.Header().Set("ETag", wire.ETag(rec.Version))
	w.WriteHeader(http.StatusNoContent)
}

// conflicted handles a lost compare-and-swap: if the node held prev, the
// origin has moved past it (versions only grow), so the held copy must not be
// served as fresh any more, or a writer reading through the node would keep
// losing against it.
func (s *Server) conflicted(ns, key string, prev record.Version) {
	if ent, ok := s.cache.Peek(ns, key); ok && ent.Record.Version == prev {
		s.cache.Invalidate(ns, key, prev+1)
	}
}

// appendLog forwards POST /v1/log.
func (s *Server) appendLog(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, wire.MaxChangeBody)
	if !ok {
		return
	}
	var wc wire.Change
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wc); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, "body of POST /v1/log: "+err.Error())
		return
	}
	c, err := wc.ToChange()
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, "body of POST /v1/log: "+err.Error())
		return
	}
	ctx, cancel := s.originContext(r)
	defer cancel()
	if err := s.origin.AppendLog(ctx, c); err != nil {
		s.fail(w, r, "append log", err)
		return
	}
	s.tail.forget(nil) // the writer may read its append back at once
	w.WriteHeader(http.StatusNoContent)
}

// readLog answers GET /v1/log?after=&limit= from the origin's log, sharing
// origin reads among requests (logTail).
func (s *Server) readLog(w http.ResponseWriter, r *http.Request) {
	after, ok := versionParam(w, r, "after", false)
	if !ok {
		return
	}
	limit := wire.MaxLogPage
	if p := r.URL.Query().Get("limit"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("limit %.20q: want a non-negative integer", p))
			return
		}
		if n > 0 && n < limit {
			limit = n
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), originTimeout)
	defer cancel()
	cs, shared, err := s.tail.get(ctx, after, limit)
	if err != nil {
		s.fail(w, r, "read log after "+after.String(), err)
		return
	}
	if shared {
		s.metrics.logShared.Inc()
	}
	if len(cs) > limit { // a store that ignores limit
		cs = cs[:limit]
	}
	page := wire.LogPage{Changes: make([]wire.Change, len(cs))}
	for i, c := range cs {
		page.Changes[i] = wire.FromChange(c)
	}
	writeJSON(w, http.StatusOK, page)
}

// trimLog forwards POST /v1/log/trim?before=.
func (s *Server) trimLog(w http.ResponseWriter, r *http.Request) {
	before, ok := versionParam(w, r, "before", true)
	if !ok {
		return
	}
	ctx, cancel := s.originContext(r)
	defer cancel()
	if err := s.origin.TrimLog(ctx, before); err != nil {
		s.fail(w, r, "trim log before "+before.String(), err)
		return
	}
	s.tail.forget(nil)
	w.WriteHeader(http.StatusNoContent)
}

// getSnapshot forwards GET /v1/snapshots/{ns}.
func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	if err := record.ValidateNamespace(ns); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), originTimeout)
	defer cancel()
	snap, err := s.origin.GetSnapshot(ctx, ns)
	if err != nil {
		s.fail(w, r, "get snapshot "+ns, err)
		return
	}
	b, err := record.MarshalSnapshot(snap)
	if err != nil { // the origin handed back a snapshot that breaks a rule
		s.fail(w, r, "get snapshot "+ns, fmt.Errorf("%w: snapshot %s: %v", record.ErrCorrupt, ns, err))
		return
	}
	w.Header().Set("Content-Type", wire.ContentTypeSnapshot)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// getSnapshotPart answers GET /v1/snapshots/{ns}/{part} for the parts
// signed checkpoints need (wire.CheckpointPart), from partCache.
func (s *Server) getSnapshotPart(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("part")
	if err := origin.CheckPartName(ns, name); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, err.Error())
		return
	}
	_, proof, ok := wire.CheckpointPart(name)
	if !ok {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("snapshot part %q: a cache node serves only %q and ckpt-<version> (16 hex digits)", name, "checkpoint"))
		return
	}
	b, shared, err := s.parts.get(r.Context(), ns, name, proof)
	if shared {
		s.metrics.partsShared.Inc()
	}
	if err != nil {
		s.fail(w, r, "get "+name+" of "+ns, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", wire.ContentTypeSnapshotPart)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// putSnapshot forwards PUT /v1/snapshots/{ns}.
func (s *Server) putSnapshot(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	if err := record.ValidateNamespace(ns); err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, err.Error())
		return
	}
	body, ok := readBody(w, r, s.cfg.maxSnapshot)
	if !ok {
		return
	}
	snap, err := record.UnmarshalSnapshot(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("body of PUT snapshot %s: %v", ns, err))
		return
	}
	if snap.Namespace != ns {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, fmt.Sprintf("body is a snapshot of %s, path names %s", snap.Namespace, ns))
		return
	}
	ctx, cancel := s.originContext(r)
	defer cancel()
	if err := s.origin.PutSnapshot(ctx, snap); err != nil {
		s.fail(w, r, "put snapshot "+ns, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// originContext bounds a forwarded write by originTimeout but not by the
// client's connection: a write the origin started is seen through.
func (s *Server) originContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), originTimeout)
}

// fail answers an error of the origin (or the cache in front of it) with the
// status and code that let the client map it back to the sentinel.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	msg := op + ": " + err.Error()
	switch {
	case errors.Is(err, record.ErrCorrupt):
		s.log.Error("corrupt object in the origin", "op", op, "err", err)
		writeError(w, http.StatusBadGateway, wire.CodeCorrupt, msg)
	case errors.Is(err, origin.ErrNotFound):
		writeError(w, http.StatusNotFound, wire.CodeNotFound, msg)
	case errors.Is(err, origin.ErrConflict):
		writeError(w, http.StatusConflict, wire.CodeConflict, msg)
	case errors.Is(err, origin.ErrLogTruncated):
		writeError(w, http.StatusGone, wire.CodeTruncated, msg)
	case errors.Is(err, record.ErrInvalid):
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, msg)
	default:
		if r.Context().Err() == nil { // not just a client that went away
			s.log.Warn("origin failed", "op", op, "err", err)
		}
		writeError(w, http.StatusServiceUnavailable, wire.CodeUnavailable, msg)
	}
}

// versionParam parses the hex version in query parameter name; absent is 0
// unless required. On a bad value it answers 400 and reports false.
func versionParam(w http.ResponseWriter, r *http.Request, name string, required bool) (record.Version, bool) {
	p := r.URL.Query().Get(name)
	if p == "" {
		if required {
			writeError(w, http.StatusBadRequest, wire.CodeInvalid, "missing query parameter "+name+" (a version in hex)")
			return 0, false
		}
		return 0, true
	}
	v, err := wire.ParseVersion(p)
	if err != nil {
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, "query parameter "+name+": "+err.Error())
		return 0, false
	}
	return v, true
}

// readBody reads the request body, at most limit bytes; beyond that it
// answers 413 and reports false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	tooLarge := func() ([]byte, bool) {
		writeError(w, http.StatusRequestEntityTooLarge, wire.CodeTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", limit))
		return nil, false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case err != nil:
		writeError(w, http.StatusBadRequest, wire.CodeInvalid, "reading body: "+err.Error())
		return nil, false
	}
	return b, true
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, wire.CodeNoRoute, r.Method+" "+r.URL.Path+": allowed methods are "+allow)
	})
}

func writeError(w http.ResponseWriter, status int, code wire.Code, msg string) {
	writeJSON(w, status, wire.Error{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", wire.ContentTypeJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// mustRevalidate reports whether a request asks, with "Cache-Control:
// max-age=0" or "no-cache" (RFC 9111), for an answer no older than the
// node's fresh window.
func mustRevalidate(h http.Header) bool {
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			if d == "no-cache" || d == "max-age=0" {
				return true
			}
		}
	}
	return false
}
