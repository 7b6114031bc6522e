// Package client is a typed Go client of the publisher's HTTP API (see
// publisher.Handler; described at GET /openapi.json): write, read and
// delete records, wait for the fleet's receipt of a write, import and export
// namespaces as JSON Lines.
//
//	c, err := client.New("https://publisher.internal:8070", client.DefaultConfig().WithToken(token))
//	w, err := c.Put(ctx, "routes", "api.example.com", routeJSON, client.Wait(5*time.Second, 1))
//	var apiErr *client.APIError
//	if errors.As(err, &apiErr) { ... apiErr.Status, apiErr.Code, apiErr.Fields ... }
//
// It retries, a bounded number of times, answers 429 and 5xx (honouring
// Retry-After, with jitter) and requests that never reached the server.
// Every write the API takes is safe to repeat: a repeated put or delete
// leaves the same state, and a repeated import line writes nothing.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dataplane/dataplane/record"
)

// Config configures a Client. Start from DefaultConfig.
type Config struct {
	// Token is the API's bearer token.
	Token string
	// HTTPClient sends the requests (set its Transport for TLS); it must
	// not be nil.
	HTTPClient *http.Client
	// Retry bounds the retries of a request.
	Retry RetryPolicy
	// UserAgent is sent with every request.
	UserAgent string
}

// RetryPolicy says how a Client retries an answer 429 or 5xx, or a
// request that never reached the server (the connection was refused).
type RetryPolicy struct {
	// Attempts is how many times a request is sent at most, the first
	// included: 1 never retries.
	Attempts int
	// Backoff is the wait before the first retry without Retry-After; it
	// doubles for each further retry, up to MaxWait, and each wait is
	// drawn at random in its upper half (jitter), so that clients refused
	// together do not come back together.
	Backoff time.Duration
	// MaxWait bounds one wait. An answer whose Retry-After asks for longer
	// is not retried: its error carries RetryAfter for the caller to
	// decide. A wait past the context's deadline is not waited either.
	MaxWait time.Duration
}

// DefaultConfig returns a Config with http.DefaultClient, 4 attempts from
// a 200 ms backoff, and waits of at most 30 s.
func DefaultConfig() Config {
	return Config{
		HTTPClient: http.DefaultClient,
		Retry:      RetryPolicy{Attempts: 4, Backoff: 200 * time.Millisecond, MaxWait: 30 * time.Second},
		UserAgent:  "dataplane-client",
	}
}

// WithToken returns a copy of c with Token set.
func (c Config) WithToken(token string) Config {
	c.Token = token
	return c
}

func (c Config) validate() error {
	switch {
	case c.HTTPClient == nil:
		return errors.New("client: Config.HTTPClient is nil (start from DefaultConfig)")
	case c.Retry.Attempts < 1:
		return fmt.Errorf("client: Config.Retry.Attempts must be at least 1, got %d", c.Retry.Attempts)
	case c.Retry.Backoff <= 0 || c.Retry.MaxWait < c.Retry.Backoff:
		return fmt.Errorf("client: Config.Retry wants 0 < Backoff <= MaxWait, got %s and %s", c.Retry.Backoff, c.Retry.MaxWait)
	}
	return nil
}

// Client talks to one publisher API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	cfg  Config
	// sleep waits d or until ctx ends; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a Client of the API at baseURL (http or https, without the
// /v1 path).
func New(baseURL string, cfg Config) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port][/prefix]", baseURL)
	}
	return &Client{base: u, cfg: cfg, sleep: sleepCtx}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Write is the answer to a put or a delete.
type Write struct {
	Namespace string         `json:"namespace"`
	Key       string         `json:"key"`
	Version   record.Version `json:"version"`
	Tombstone bool           `json:"tombstone"`
	// Receipt is the fleet's receipt, when the write asked to Wait.
	Receipt *Receipt `json:"receipt,omitempty"`
}

// Receipt says which members of the fleet applied one version of one key:
// per region, how many of its members have, and which have not.
type Receipt struct {
	Namespace string         `json:"namespace"`
	Key       string         `json:"key"`
	Version   record.Version `json:"version"`
	// Share is the fraction of each region's members that had to apply.
	Share float64 `json:"share"`
	// Met reports that every region reached Share.
	Met bool `json:"met"`
	// WaitedMS is how long the server waited, in milliseconds.
	WaitedMS float64 `json:"waited_ms"`
	// Regions lists every region with a member counted, sorted by name.
	Regions []RegionReceipt `json:"regions"`
}

// Waited is how long the server waited for the receipt.
func (r Receipt) Waited() time.Duration { return time.Duration(r.WaitedMS * float64(time.Millisecond)) }

// RegionReceipt is one region's part of a Receipt.
type RegionReceipt struct {
	Region  string `json:"region"`
	Applied int    `json:"applied"`
	Total   int    `json:"total"`
	Met     bool   `json:"met"`
	// Pending names the members that have not reported the version.
	Pending []string `json:"pending,omitempty"`
	// Down names the Pending members declared failed.
	Down []string `json:"down,omitempty"`
	// Refused names the members that refused the change, and why.
	Refused []Refusal `json:"refused,omitempty"`
}

// Refusal is a member's refusal of a change.
type Refusal struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// Record is a record's value as Get answers it.
type Record struct {
	Namespace string
	Key       string
	Value     []byte
	Version   record.Version
	// ContentType is application/json when the value is JSON, else
	// application/octet-stream.
	ContentType string
}

// ImportStats summarises an import.
type ImportStats struct {
	Lines     int         `json:"lines"`
	Written   int         `json:"written"`
	Unchanged int         `json:"unchanged"`
	Rejected  int         `json:"rejected"`
	Errors    []LineError `json:"errors,omitempty"`
}

// LineError says why an import line was rejected.
type LineError struct {
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// Error says which line was rejected and why.
func (e LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// WriteOption changes a put or a delete.
type WriteOption func(*url.Values)

// Wait asks the server to wait, up to d (at most 5m), until share (0 <
// share <= 1) of the nodes of every region have applied the write, and to
// answer its Receipt. When the wait passes first, the write is still
// durable: Put and Delete return it with its Receipt and an error wrapping
// ErrNotApplied. The request's context must outlast d.
func Wait(d time.Duration, share float64) WriteOption {
	return func(q *url.Values) {
		q.Set("wait", d.String())
		q.Set("share", strconv.FormatFloat(share, 'f', -1, 64))
	}
}

// Put writes value as the record's value, with a new version.
func (c *Client) Put(ctx context.Context, ns, key string, value []byte, opts ...WriteOption) (Write, error) {
	return c.write(ctx, http.MethodPut, ns, key, value, opts)
}

// Delete deletes the record: a tombstone with a new version.
func (c *Client) Delete(ctx context.Context, ns, key string, opts ...WriteOption) (Write, error) {
	return c.write(ctx, http.MethodDelete, ns, key, nil, opts)
}

func (c *Client) write(ctx context.Context, method, ns, key string, value []byte, opts []WriteOption) (Write, error) {
	q := url.Values{}
	for _, o := range opts {
		o(&q)
	}
	var body func() (io.Reader, error)
	if method == http.MethodPut {
		body = func() (io.Reader, error) { return bytes.NewReader(value), nil }
	}
	resp, err := c.do(ctx, method, recordPath(ns, key), q, body, "application/octet-stream")
	if err != nil {
		return Write{}, err
	}
	defer resp.Body.Close()
	var w Write
	if err := decode(resp, &w); err != nil {
		return Write{}, err
	}
	if resp.StatusCode == http.StatusAccepted {
		return w, fmt.Errorf("%s %s/%s version %s: %w", strings.ToLower(method), ns, key, w.Version, ErrNotApplied)
	}
	return w, nil
}

// Get reads a record's value. A key never written, or deleted, is an
// *APIError with Code CodeNotFound (errors.Is(err, ErrNotFound)).
func (c *Client) Get(ctx context.Context, ns, key string) (Record, error) {
	resp, err := c.do(ctx, http.MethodGet, recordPath(ns, key), nil, nil, "")
	if err != nil {
		return Record{}, err
	}
	defer resp.Body.Close()
	v, err := record.ParseVersion(resp.Header.Get("X-Dataplane-Version"))
	if err != nil {
		return Record{}, fmt.Errorf("client: GET %s/%s: version header: %w", ns, key, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Record{}, fmt.Errorf("client: GET %s/%s: %w", ns, key, err)
	}
	return Record{Namespace: ns, Key: key, Value: b, Version: v, ContentType: resp.Header.Get("Content-Type")}, nil
}

// Import writes the JSON Lines of r (see publisher.Import for the format):
// a bad line is rejected, counted and listed in ImportStats.Errors, and the
// others are written. An import that stopped early returns what it did
// with the error. It is retried only when r is an io.Seeker (a file, a
// bytes.Reader), from where r was.
func (c *Client) Import(ctx context.Context, r io.Reader) (ImportStats, error) {
	body := func() (io.Reader, error) { return r, nil }
	attempts := 1
	if s, ok := r.(io.Seeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return ImportStats{}, fmt.Errorf("client: import: %w", err)
		}
		first := true
		body = func() (io.Reader, error) {
			if !first {
				if _, err := s.Seek(start, io.SeekStart); err != nil {
					return nil, err
				}
			}
			first = false
			return r, nil
		}
		attempts = c.cfg.Retry.Attempts
	}
	resp, err := c.send(ctx, http.MethodPost, "/v1/import", nil, body, "application/x-ndjson", attempts)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Stats != nil {
			return *ae.Stats, err
		}
		return ImportStats{}, err
	}
	defer resp.Body.Close()
	var st ImportStats
	return st, decode(resp, &st)
}

// Export writes the namespace's live records to w as JSON Lines, the
// format Import reads.
func (c *Client) Export(ctx context.Context, ns string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/export/"+url.PathEscape(ns), nil, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("client: export %s: %w", ns, err)
	}
	return nil
}

func recordPath(ns, key string) string {
	return "/v1/records/" + url.PathEscape(ns) + "/" + url.PathEscape(key)
}

// do sends a request with every attempt the policy allows.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body func() (io.Reader, error), ctype string) (*http.Response, error) {
	return c.send(ctx, method, path, q, body, ctype, c.cfg.Retry.Attempts)
}

// send sends the request up to attempts times, and returns the first
// answer that is 2xx, or an error (an *APIError for an error answer). body
// makes the request's body for each attempt (nil: none).
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body func() (io.Reader, error), ctype string, attempts int) (*http.Response, error) {
	target := c.base.String() + path // path is escaped already
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	for attempt := 1; ; attempt++ {
		var rd io.Reader
		if body != nil {
			var err error
			if rd, err = body(); err != nil {
				return nil, fmt.Errorf("client: %s %s: body: %w", method, path, err)
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, target, rd)
		if err != nil {
			return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
		}
		if rd != nil {
			req.Header.Set("Content-Type", ctype)
		}
		if c.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
		}
		req.Header.Set("User-Agent", c.cfg.UserAgent)
		resp, err := c.cfg.HTTPClient.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			if !neverSent(err) || attempt >= attempts || ctx.Err() != nil {
				return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
			}
			wait = c.backoff(attempt)
		case resp.StatusCode < 300:
			return resp, nil
		default:
			apiErr := readError(resp)
			resp.Body.Close()
			if !retryable(resp.StatusCode) || attempt >= attempts {
				return nil, apiErr
			}
			wait = c.backoff(attempt)
			if apiErr.RetryAfter > 0 {
				if apiErr.RetryAfter > c.cfg.Retry.MaxWait {
					return nil, apiErr // longer than we may wait: the caller decides
				}
				// At least what the server asked, plus up to a tenth more.
				wait = apiErr.RetryAfter + rand.N(apiErr.RetryAfter/10+time.Millisecond)
			}
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return nil, apiErr
			}
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("client: %s %s: %w", method, path, err)
		}
	}
}

// backoff is the wait before retry number attempt (1 for the first retry)
// without Retry-After: Backoff doubled per retry up to MaxWait, drawn in
// its upper half.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.Retry.Backoff
	for i := 1; i < attempt && d < c.cfg.Retry.MaxWait; i++ {
		d *= 2
	}
	d = min(d, c.cfg.Retry.MaxWait)
	return d/2 + rand.N(d/2+1)
}

func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// neverSent reports whether err is a failure to connect, so that the
// server cannot have seen the request.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// decode reads a JSON answer into v.
func decode(resp *http.Response, v any) error {
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("client: %s %s: decoding the answer: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}
