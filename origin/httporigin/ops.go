package httporigin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

const defaultMaxSnapshotSize = wire.DefaultMaxSnapshotSize

// Rendezvous keys of the calls that are not about one record.
var logHash = keyHash("", "\x00log")

func snapshotHash(ns string) uint64 { return keyHash(ns, "\x00snapshot") }

// request is one HTTP request to a node.
type request struct {
	method, path, query string // path escaped
	ifNoneMatch         string
	revalidate          bool // ask for "Cache-Control: max-age=0"
	contentType         string
	body                []byte
	token               string
}

// response is a node's answer, its body read up to a limit.
type response struct {
	status int
	etag   string
	body   []byte
}

// exchange sends rq to n and reads the answer: a 2xx body up to okLimit
// bytes (one more, so decoders see an oversized body as such), an error body
// up to wire.MaxErrorBody. Failures to send or read are nodeErrors.
func (s *Store) exchange(ctx context.Context, n *node, rq request, okLimit int64) (response, error) {
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
	}
	u := n.base + rq.path
	if rq.query != "" {
		u += "?" + rq.query
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, u, body)
	if err != nil {
		return response{}, &nodeError{node: n.base, err: fmt.Errorf("%w: building the request: %v", origin.ErrUnavailable, err), sick: true}
	}
	if rq.ifNoneMatch != "" {
		req.Header.Set("If-None-Match", rq.ifNoneMatch)
	}
	if rq.revalidate {
		req.Header.Set("Cache-Control", "max-age=0")
	}
	if rq.contentType != "" {
		req.Header.Set("Content-Type", rq.contentType)
	}
	if rq.token != "" {
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, transportError(n, err)
	}
	defer resp.Body.Close()
	limit := int64(wire.MaxErrorBody)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		limit = okLimit
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return response{}, &nodeError{node: n.base, err: fmt.Errorf("%w: reading the answer: %v", origin.ErrUnavailable, err), sick: true, sent: true}
	}
	return response{status: resp.StatusCode, etag: resp.Header.Get("ETag"), body: b}, nil
}

// answer names node n in err: a nodeError gets its node, an answer about
// the data gets "via <node>". Not-modified stays bare: it is the hot path.
func answer(n *node, err error) error {
	var ne *nodeError
	switch {
	case err == nil, err == origin.ErrNotModified:
		return err
	case errors.As(err, &ne):
		if ne.node == "" {
			ne.node = n.base
		}
		return err
	}
	return fmt.Errorf("via %s: %w", n.base, err)
}

// Get implements origin.Store: one GET to the key's node, conditional on
// ifNewer. It asks with "Cache-Control: max-age=0", so a node whose copy is
// past its own fresh window reads the origin again before answering (a
// caller starts a new fresh window from what Get returns: a node's stale
// copy taken as current would double the staleness bound); only when the
// origin cannot answer does the node pass on its stale copy.
func (s *Store) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, err
	}
	if err := ctx.Err(); err != nil {
		return record.Record{}, fmt.Errorf("httporigin: get %s/%s: %w", ns, key, err)
	}
	rq := request{method: http.MethodGet, path: wire.RecordPath(ns, key), token: s.rtoken, revalidate: true}
	if ifNewer != 0 {
		rq.ifNoneMatch = wire.ETag(ifNewer)
	}
	var rec record.Record
	fromFallback := false
	err := s.call(ctx, keyHash(ns, key), true, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, record.MaxEncodedSize)
		if err != nil {
			return err
		}
		rec, err = decodeGet(ns, key, ifNewer, resp.status, resp.etag, resp.body)
		return answer(n, err)
	}, func(fb origin.Store) (err error) {
		fromFallback = true
		rec, err = fb.Get(ctx, ns, key, ifNewer)
		return err
	})
	switch {
	case err == nil:
		return rec, nil
	case err == origin.ErrNotModified, fromFallback:
		return record.Record{}, err
	}
	return record.Record{}, fmt.Errorf("httporigin: get %s/%s: %w", ns, key, err)
}

// CompareAndSwap implements origin.Store: a PUT to the key's node, which
// forwards it to the origin and caches the record on success.
func (s *Store) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := origin.CheckSwap(rec, prev); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("httporigin: put %s/%s: %w", rec.Namespace, rec.Key, err)
	}
	body, err := record.Marshal(rec)
	if err != nil {
		return err
	}
	rq := request{
		method: http.MethodPut, path: wire.RecordPath(rec.Namespace, rec.Key), query: "prev=" + prev.String(),
		contentType: wire.ContentTypeRecord, body: body, token: s.token,
	}
	fromFallback := false
	err = s.call(ctx, keyHash(rec.Namespace, rec.Key), false, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, wire.MaxErrorBody)
		if err != nil {
			return err
		}
		return answer(n, decodeDone(resp.status, resp.body))
	}, func(fb origin.Store) error {
		fromFallback = true
		return fb.CompareAndSwap(ctx, rec, prev)
	})
	if err != nil && !fromFallback {
		return fmt.Errorf("httporigin: put %s/%s@%s (prev %s): %w", rec.Namespace, rec.Key, rec.Version, prev, err)
	}
	return err
}

// AppendLog implements origin.Store.
func (s *Store) AppendLog(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	body, err := json.Marshal(wire.FromChange(c))
	if err != nil {
		return fmt.Errorf("httporigin: append log: %w", err)
	}
	rq := request{method: http.MethodPost, path: wire.LogPath, contentType: wire.ContentTypeJSON, body: body, token: s.token}
	err = s.write(ctx, logHash, rq, func(fb origin.Store) error { return fb.AppendLog(ctx, c) })
	if err != nil {
		return fmt.Errorf("httporigin: append log %s/%s@%s: %w", c.Namespace, c.Key, c.Version, err)
	}
	return nil
}

// ReadLog implements origin.Store. A node answers at most wire.MaxLogPage
// changes at a time; ReadLog pages until it has limit changes (all of them
// for limit <= 0) or the log ends.
func (s *Store) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	var out []record.Change
	for {
		n := wire.MaxLogPage
		if limit > 0 && limit-len(out) < n {
			n = limit - len(out)
		}
		page, err := s.readLogPage(ctx, after, n)
		if err != nil {
			return nil, err
		}
		more := len(page) == n && (limit <= 0 || len(out)+len(page) < limit)
		if more {
			// The next page starts after a version: leave a trailing run
			// of one version for it, so none of the run is skipped
			// (unless the run is the whole page).
			last, i := page[len(page)-1].Version, len(page)
			for i > 0 && page[i-1].Version == last {
				i--
			}
			if i > 0 {
				page = page[:i]
			}
			if next := page[len(page)-1].Version; next <= after {
				return nil, fmt.Errorf("httporigin: read log after %s: %w: a page did not move past it", after, record.ErrCorrupt)
			}
		}
		out = append(out, page...)
		if !more {
			return out, nil
		}
		after = page[len(page)-1].Version
	}
}

func (s *Store) readLogPage(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("httporigin: read log: %w", err)
	}
	rq := request{
		method: http.MethodGet, path: wire.LogPath, token: s.rtoken,
		query: "after=" + after.String() + "&limit=" + strconv.Itoa(limit),
	}
	var page []record.Change
	fromFallback := false
	err := s.call(ctx, logHash, true, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, wire.MaxLogBody)
		if err != nil {
			return err
		}
		page, err = decodeLog(after, limit, resp.status, resp.body)
		return answer(n, err)
	}, func(fb origin.Store) (err error) {
		fromFallback = true
		page, err = fb.ReadLog(ctx, after, limit)
		return err
	})
	if fromFallback {
		return page, err
	}
	if err != nil {
		return nil, fmt.Errorf("httporigin: read log after %s: %w", after, err)
	}
	return page, nil
}

// TrimLog implements origin.Store.
func (s *Store) TrimLog(ctx context.Context, before record.Version) error {
	rq := request{method: http.MethodPost, path: wire.TrimPath, query: "before=" + before.String(), token: s.token}
	if err := s.write(ctx, logHash, rq, func(fb origin.Store) error { return fb.TrimLog(ctx, before) }); err != nil {
		return fmt.Errorf("httporigin: trim log before %s: %w", before, err)
	}
	return nil
}

// PutSnapshot implements origin.Store.
func (s *Store) PutSnapshot(ctx context.Context, snap record.Snapshot) error {
	body, err := record.MarshalSnapshot(snap)
	if err != nil {
		return err
	}
	if int64(len(body)) > s.maxSnap {
		return fmt.Errorf("httporigin: snapshot %s: %w: %d bytes encoded, limit is %d (Config.MaxSnapshotSize)", snap.Namespace, record.ErrInvalid, len(body), s.maxSnap)
	}
	rq := request{method: http.MethodPut, path: wire.SnapshotPath(snap.Namespace), contentType: wire.ContentTypeSnapshot, body: body, token: s.token}
	if err := s.write(ctx, snapshotHash(snap.Namespace), rq, func(fb origin.Store) error { return fb.PutSnapshot(ctx, snap) }); err != nil {
		return fmt.Errorf("httporigin: put snapshot %s: %w", snap.Namespace, err)
	}
	return nil
}

// GetSnapshot implements origin.Store.
func (s *Store) GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return record.Snapshot{}, err
	}
	if err := ctx.Err(); err != nil {
		return record.Snapshot{}, fmt.Errorf("httporigin: get snapshot %s: %w", ns, err)
	}
	rq := request{method: http.MethodGet, path: wire.SnapshotPath(ns), token: s.rtoken}
	var snap record.Snapshot
	fromFallback := false
	err := s.call(ctx, snapshotHash(ns), true, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, s.maxSnap)
		if err != nil {
			return err
		}
		snap, err = decodeSnapshot(ns, resp.status, resp.body)
		return answer(n, err)
	}, func(fb origin.Store) (err error) {
		fromFallback = true
		snap, err = fb.GetSnapshot(ctx, ns)
		return err
	})
	if fromFallback {
		return snap, err
	}
	if err != nil {
		return record.Snapshot{}, fmt.Errorf("httporigin: get snapshot %s: %w", ns, err)
	}
	return snap, nil
}

// write sends an idempotent write (log append, trim, snapshot put) to the
// node of h, or to the fallback through fb when no node answers.
func (s *Store) write(ctx context.Context, h uint64, rq request, fb func(origin.Store) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.call(ctx, h, true, func(ctx context.Context, n *node) error {
		resp, err := s.exchange(ctx, n, rq, wire.MaxErrorBody)
		if err != nil {
			return err
		}
		return answer(n, decodeDone(resp.status, resp.body))
	}, fb)
}
