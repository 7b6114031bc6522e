package publisher

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dataplane/dataplane/openapi"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// maxImportBody bounds one POST /v1/import body.
const maxImportBody = 1 << 30

// MaxRequestBody is the largest request body Handler reads (an import), for
// sizing a server's timeouts.
const MaxRequestBody = maxImportBody

// VersionHeader carries a record's version (16 hex digits) in responses of
// the admin API.
const VersionHeader = "X-Dataplane-Version"

// Handler returns the publisher's HTTP admin API:
//
//	PUT    /v1/records/{namespace}/{key...}  body = value (at most record.MaxValueSize bytes, else 413)
//	GET    /v1/records/{namespace}/{key...}  the value; 404 if absent or deleted
//	DELETE /v1/records/{namespace}/{key...}  writes a tombstone
//	POST   /v1/import                        JSON Lines body (see Import); answers ImportStats
//	GET    /v1/export/{namespace}            JSON Lines (see Export)
//
// PUT and DELETE take ?wait=DURATION (e.g. 5s, at most 5m) and
// ?share=FRACTION (0 < share <= 1, default 1): after the write, the answer
// waits until that share of the nodes of every region have applied it, or
// the wait passes, and carries a "receipt" (gossip.Receipt: per region
// applied/total and the nodes not yet applied). 200 if met, 202 Accepted
// if the wait passed first (the write is durable either way; the fleet
// catches up from gossip and the change log). A publisher without a gossip
// node answers 400 to ?wait, before writing.
//
// Every request needs "Authorization: Bearer <token>"; the token is compared
// in constant time and never logged. An empty token refuses every request.
// Writes answer {"namespace","key","version","tombstone"}; GET answers the
// value with its version in the X-Dataplane-Version header and as the ETag.
// Every error is JSON, {"error": "...", "code": "...", "fields": [...]},
// naming what was wrong: code is one of the Code constants, and fields, when
// present, name the request's parts at fault (a query parameter, or a field
// of the value its namespace's schema refused; see FieldError).
//
// GET /openapi.json, which needs no token, answers the OpenAPI description
// of the publisher's server (openapi.Publisher): this API and the admin
// endpoints that `dataplane publish serve` mounts beside it.
func Handler(p *Publisher, token string) http.Handler {
	h := &handler{p: p, token: sha256.Sum256([]byte(token)), hasToken: token != ""}
	api := http.NewServeMux()
	for _, rt := range h.routes() {
		api.HandleFunc(rt.pattern, rt.handle)
	}
	// Only the description is served without the token. Not through a
	// second ServeMux: one would answer unclean paths ("/.") with a
	// redirect before the token is checked (FuzzHandler found it).
	doc, authed := openapi.Handler(openapi.Publisher), h.authenticate(api)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			doc.ServeHTTP(w, r)
			return
		}
		authed.ServeHTTP(w, r)
	})
}

// route is one pattern of Handler's mux.
type route struct {
	pattern string
	handle  http.HandlerFunc
}

// routes lists what Handler serves behind the token; the OpenAPI test
// checks that every pattern with a method is documented.
func (h *handler) routes() []route {
	return []route{
		{"GET /v1/records/{namespace}/{key...}", h.getRecord},
		{"PUT /v1/records/{namespace}/{key...}", h.putRecord},
		{"DELETE /v1/records/{namespace}/{key...}", h.deleteRecord},
		{"/v1/records/{namespace}/{key...}", methodNotAllowed("GET, HEAD, PUT, DELETE")},
		{"POST /v1/import", h.importLines},
		{"/v1/import", methodNotAllowed("POST")},
		{"GET /v1/export/{namespace}", h.export},
		{"/v1/export/{namespace}", methodNotAllowed("GET, HEAD")},
		{"/", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), Code: CodeNoRoute})
		}},
	}
}

// Code classifies an error answer of the API, so that a client can act on
// it without parsing the message.
type Code string

// The codes of error answers, with the status each comes with.
const (
	CodeInvalid      Code = "invalid"      // 400: a bad parameter, namespace, key or value
	CodeUnauthorized Code = "unauthorized" // 401: no or a wrong bearer token
	CodeNotFound     Code = "not_found"    // 404: no such record, or it was deleted
	CodeNoRoute      Code = "no_route"     // 404, 405: no such endpoint, or not with that method
	CodeConflict     Code = "conflict"     // 409: a concurrent write won
	CodeTooLarge     Code = "too_large"    // 413: a value or an import over its limit
	CodeUnavailable  Code = "unavailable"  // 503: the origin cannot be reached; retry
	CodeInternal     Code = "internal"     // 500
)

// codeFor is the Code of an error answer with the given status.
func codeFor(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalid
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeNoRoute
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	default:
		return CodeInternal
	}
}

// FieldError names one part of a request that was wrong: In is "query" (a
// query parameter, such as wait) or "value" (a field of the record's value,
// as its namespace's schema refused it, like "upstreams[1]"; empty for the
// value as a whole).
type FieldError struct {
	In     string `json:"in"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// errorBody is every error answer.
type errorBody struct {
	Error  string       `json:"error"`
	Code   Code         `json:"code"`
	Fields []FieldError `json:"fields,omitempty"`
}

type handler struct {
	p        *Publisher
	token    [sha256.Size]byte // hashed, so the comparison takes the same time whatever the lengths
	hasToken bool
}

func (h *handler) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dataplane"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token: send the header Authorization: Bearer <token>")
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], h.token[:]) != 1 || !h.hasToken {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dataplane", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header; the scheme is case-insensitive.
func bearerToken(header string) (string, bool) {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(header[len(scheme):])
	return tok, tok != ""
}

// writeResult is the answer to a write.
type writeResult struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Version   string `json:"version"`
	Tombstone bool   `json:"tombstone"`
}

func (h *handler) putRecord(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PathValue("namespace"), r.PathValue("key")
	if r.ContentLength > record.MaxValueSize {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value is %d bytes, limit is %d", r.ContentLength, record.MaxValueSize))
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, record.MaxValueSize))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value exceeds the limit of %d bytes", record.MaxValueSize))
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "read request body: "+err.Error())
		return
	}
	wait, share, ok := h.waitParams(w, r)
	if !ok {
		return
	}
	rec, err := h.p.Put(r.Context(), ns, key, value)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeWaited(w, r, rec, wait, share)
}

func (h *handler) deleteRecord(w http.ResponseWriter, r *http.Request) {
	wait, share, ok := h.waitParams(w, r)
	if !ok {
		return
	}
	rec, err := h.p.Delete(r.Context(), r.PathValue("namespace"), r.PathValue("key"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeWaited(w, r, rec, wait, share)
}

func writeWrite(w http.ResponseWriter, rec record.Record) {
	w.Header().Set(VersionHeader, rec.Version.String())
	writeJSON(w, http.StatusOK, writeResult{Namespace: rec.Namespace, Key: rec.Key, Version: rec.Version.String(), Tombstone: rec.Tombstone})
}

func (h *handler) getRecord(w http.ResponseWriter, r *http.Request) {
	ns, key := r.PathValue("namespace"), r.PathValue("key")
	rec, err := h.p.Get(r.Context(), ns, key)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set(VersionHeader, rec.Version.String())
	if rec.Tombstone {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s/%s: deleted at version %s", ns, key, rec.Version))
		return
	}
	ctype := "application/octet-stream"
	if json.Valid(rec.Value) {
		ctype = "application/json"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("ETag", `"`+rec.Version.String()+`"`)
	w.Header().Set("Content-Length", fmt.Sprint(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Value)
	}
}

// importResult is the answer to an import that stopped early.
type importResult struct {
	errorBody
	Stats ImportStats `json:"stats"`
}

func (h *handler) importLines(w http.ResponseWriter, r *http.Request) {
	st, err := h.p.Import(r.Context(), http.MaxBytesReader(w, r.Body, maxImportBody), nil)
	if err != nil {
		status := statusOf(err)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			status = http.StatusRequestEntityTooLarge
		}
		if status >= 500 {
			h.p.log.Error("admin API: import stopped", "err", err, "lines", st.Lines)
		}
		writeJSON(w, status, importResult{errorBody: errorBody{Error: err.Error(), Code: codeFor(status)}, Stats: st})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) export(w http.ResponseWriter, r *http.Request) {
	snap, err := h.p.exportState(r.Context(), r.PathValue("namespace"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	if r.Method == http.MethodHead {
		return
	}
	if err := writeExport(w, snap); err != nil {
		// The status is sent; all we can do is log.
		h.p.log.Warn("admin API: export interrupted", "namespace", snap.Namespace, "err", err)
	}
}

// fail answers err with the status its kind calls for.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		h.p.log.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{Error: err.Error(), Code: codeFor(status), Fields: fieldsOf(err)})
}

// fieldsOf names the fields of a value its schema refused.
func fieldsOf(err error) []FieldError {
	var fe *schema.FieldError
	if !errors.As(err, &fe) {
		return nil
	}
	return []FieldError{{In: "value", Field: fe.Field, Reason: fe.Reason}}
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, record.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, origin.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, origin.ErrStale), errors.Is(err, origin.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, origin.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: codeFor(status)})
}

// writeParamError answers 400 for a bad query parameter.
func writeParamError(w http.ResponseWriter, param, reason string) {
	writeJSON(w, http.StatusBadRequest, errorBody{
		Error: param + ": " + reason, Code: CodeInvalid,
		Fields: []FieldError{{In: "query", Field: param, Reason: reason}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
