package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Code classifies an error answer of the API (the "code" of its body).
type Code string

// The codes of the API's error answers (publisher.Code), with their status.
const (
	CodeInvalid      Code = "invalid"      // 400: a bad parameter, namespace, key or value
	CodeUnauthorized Code = "unauthorized" // 401: no or a wrong token
	CodeNotFound     Code = "not_found"    // 404: no such record, or it was deleted
	CodeNoRoute      Code = "no_route"     // 404, 405: no such endpoint or method
	CodeConflict     Code = "conflict"     // 409: a concurrent write won
	CodeTooLarge     Code = "too_large"    // 413: a value or an import over its limit
	CodeUnavailable  Code = "unavailable"  // 503: the origin cannot be reached
	CodeInternal     Code = "internal"     // 500
)

// Codes lists every Code.
var Codes = []Code{CodeInvalid, CodeUnauthorized, CodeNotFound, CodeNoRoute, CodeConflict, CodeTooLarge, CodeUnavailable, CodeInternal}

// Sentinel errors an *APIError matches with errors.Is, by its Code.
var (
	ErrInvalid      = errors.New("invalid request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrTooLarge     = errors.New("too large")
	ErrUnavailable  = errors.New("unavailable")
)

// ErrNotApplied is wrapped by the error of a write that asked to Wait when
// the wait passed before the fleet applied it: the write is durable, and
// its Receipt says which regions and members had not.
var ErrNotApplied = errors.New("not applied by the requested share of every region before the wait passed")

var codeErrors = map[Code]error{
	CodeInvalid: ErrInvalid, CodeUnauthorized: ErrUnauthorized, CodeNotFound: ErrNotFound,
	CodeConflict: ErrConflict, CodeTooLarge: ErrTooLarge, CodeUnavailable: ErrUnavailable,
}

// FieldError names one part of a request the server found wrong.
type FieldError struct {
	// In is "query" (a query parameter) or "value" (a field of the
	// record's value, as its namespace's schema refused it).
	In string `json:"in"`
	// Field is the parameter's name, or the field's path in the value
	// (like "upstreams[1]"; empty for the value as a whole).
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// APIError is an error answer of the API. Get it with errors.As; match
// its kind with errors.Is and the Err* sentinels.
type APIError struct {
	// Status is the HTTP status.
	Status int
	// Code classifies the error; empty when the answer was not the API's
	// (a proxy's page, say).
	Code Code
	// Message is the server's description of what was wrong.
	Message string
	// Fields names the parts of the request at fault, when the server
	// could.
	Fields []FieldError
	// RetryAfter is the answer's Retry-After, when it had one.
	RetryAfter time.Duration
	// Stats is what an import that stopped early did until then.
	Stats *ImportStats
}

// Error names the status, the code and the server's message.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "publisher API: HTTP %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// Is reports whether target is the sentinel error of e's Code.
func (e *APIError) Is(target error) bool {
	s, ok := codeErrors[e.Code]
	return ok && s == target
}

// readError reads an error answer into an *APIError.
func readError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		Error  string       `json:"error"`
		Code   Code         `json:"code"`
		Fields []FieldError `json:"fields"`
		Stats  *ImportStats `json:"stats"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		e.Code, e.Message, e.Fields, e.Stats = body.Code, body.Error, body.Fields, body.Stats
		return e
	}
	e.Message = strings.TrimSpace(string(b))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date.
// Anything else, or a time passed, is 0.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseUint(h, 10, 31); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
