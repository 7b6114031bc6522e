package dataplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dataplane/dataplane/internal/bearer"
	"github.com/dataplane/dataplane/record"
)

// WatchPath is where WatchHandler is mounted: GET WatchPath + ns.
const WatchPath = "/v1/watch/"

// DefaultWatchHeartbeat is how often WatchHandler writes a heartbeat line
// unless the request asks otherwise.
const DefaultWatchHeartbeat = 5 * time.Second

// WatchLine is one line of the HTTP watch stream (newline-delimited JSON).
type WatchLine struct {
	// Type is "change", "heartbeat", or "end" (the last line when the
	// stream ends from the server's side; Error and Code say why).
	Type      string `json:"type"`
	Namespace string `json:"namespace,omitempty"`
	Key       string `json:"key,omitempty"`
	// Version is the change's version, 16 hex digits.
	Version   string `json:"version,omitempty"`
	Tombstone bool   `json:"tombstone,omitempty"`
	// Cursor is where to resume (?after=Cursor) after this line: every
	// change up to it has been sent (see WatchEvent.Cursor).
	Cursor string `json:"cursor"`
	// Error and Code describe why an "end" line ended the stream: code
	// "lagged" (resume from Cursor), "closed" (the node is stopping).
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
}

// WatchHandler serves a resumable watch over HTTP for non-Go consumers,
// behind the admin token: GET /v1/watch/{ns}?after=<version, 16 hex
// digits; default 0: the whole namespace>&heartbeat=<Go duration, default
// 5s, at least 100ms> answers 200 with Content-Type application/x-ndjson
// and streams one WatchLine per line: the replay and the live changes
// ("change", with version and cursor), a "heartbeat" line with the cursor
// every heartbeat, and an "end" line if the server ends the stream (a
// reader that fell behind: code "lagged"; the node closing: "closed"). A
// client resumes, after any disconnect, with ?after= the cursor of the
// last line it read. A cursor ahead of what the node has applied streams
// heartbeats carrying it unchanged until the node reaches it (see
// Node.WatchFrom). Errors before streaming, as {"error": reason}: 400 for
// a bad parameter, including a cursor no node could have reached
// (ErrCursorAhead: re-list from 0); 404 for a namespace the node does not
// hold whole; 501 on a TTL-only node (ErrWatchTTLOnly:
// retrying cannot help); 503 (Retry-After) while the
// namespace is not complete yet.
func WatchHandler(node *Node, token string) http.Handler {
	return bearer.Require(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			b, _ := json.Marshal(map[string]string{"error": msg})
			w.Write(append(b, '\n'))
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			fail(http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		ns, ok := strings.CutPrefix(r.URL.Path, WatchPath)
		if !ok || record.ValidateNamespace(ns) != nil {
			fail(http.StatusNotFound, "no such endpoint")
			return
		}
		q := r.URL.Query()
		var after record.Version
		if s := q.Get("after"); s != "" {
			v, err := strconv.ParseUint(s, 16, 64)
			if err != nil {
				fail(http.StatusBadRequest, "after: want a version in hex (the cursor of a line of this stream)")
				return
			}
			after = record.Version(v)
		}
		beat := DefaultWatchHeartbeat
		if s := q.Get("heartbeat"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 100*time.Millisecond {
				fail(http.StatusBadRequest, "heartbeat: want a duration of at least 100ms")
				return
			}
			beat = d
		}
		if !slices.Contains(node.cfg.Namespaces, ns) {
			fail(http.StatusNotFound, "namespace "+ns+" is not held whole by this node")
			return
		}
		ws, err := node.WatchFrom(r.Context(), ns, after, WatchOptions{Progress: beat})
		switch {
		case errors.Is(err, ErrCursorAhead):
			fail(http.StatusBadRequest, err.Error())
			return
		case errors.Is(err, ErrWatchTTLOnly):
			fail(http.StatusNotImplemented, err.Error())
			return
		case errors.Is(err, ErrWatchIncomplete):
			w.Header().Set("Retry-After", "1")
			fail(http.StatusServiceUnavailable, err.Error())
			return
		case err != nil:
			fail(http.StatusServiceUnavailable, err.Error())
			return
		}
		defer ws.Stop()
		// A stream outlives the admin server's read and write timeouts.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		write := func(l WatchLine) bool {
			if enc.Encode(l) != nil {
				return false
			}
			// Flush when nothing more is waiting, so a replay goes out
			// in large writes.
			if len(ws.C) == 0 {
				return rc.Flush() == nil
			}
			return true
		}
		if !write(WatchLine{Type: "heartbeat", Cursor: after.String()}) {
			return
		}
		cursor := after
		for ev := range ws.C {
			cursor = ev.Cursor
			l := WatchLine{Type: "heartbeat", Cursor: ev.Cursor.String()}
			if !ev.Progress {
				c := ev.Change
				l = WatchLine{Type: "change", Namespace: c.Namespace, Key: c.Key, Version: c.Version.String(), Tombstone: c.Tombstone, Cursor: ev.Cursor.String()}
			}
			if !write(l) {
				return
			}
		}
		end := WatchLine{Type: "end", Cursor: cursor.String()}
		switch err := ws.Err(); {
		case errors.Is(err, ErrWatchLagged):
			end.Code, end.Error = "lagged", err.Error()
		case errors.Is(err, ErrClosed):
			end.Code, end.Error = "closed", err.Error()
		default:
			return // the client went away
		}
		write(end)
	}))
}
