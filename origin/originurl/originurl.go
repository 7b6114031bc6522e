// Package originurl opens an origin.Store from one URL-like string, so every
// command and config file names its origin the same way:
//
//	dir:///var/lib/dataplane                  a local directory (also a bare path)
//	s3://bucket/prefix/?endpoint=http://127.0.0.1:7070&region=us-east-1&path-style=true&create=true
//	dynamodb://table?endpoint=http://127.0.0.1:4567&region=us-east-1&create=true
//	http://cache-1:8081,http://cache-2:8081   a set of cache nodes (the regional tier)
//
// Credentials for s3 and dynamodb come from the AWS SDK's default chain
// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared config, roles).
// create=true makes the bucket or table if it does not exist (dev and tests).
package originurl

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
)

// Options carry what a URL cannot: shared clients and loggers.
type Options struct {
	// HTTPClient, when set, sends the store's HTTP requests (s3, dynamodb,
	// cache tier): the bench wraps it to add WAN latency.
	HTTPClient interface {
		Do(*http.Request) (*http.Response, error)
	}
	// Logger receives the store's warnings.
	Logger *slog.Logger
	// OpenHTTP opens a cache-tier store for http(s) specs; nil makes such
	// specs an error. (It is a hook so that this package does not depend on
	// the cache tier's client.)
	OpenHTTP func(nodes []string) (origin.Store, error)
}

// Open returns the store spec names. Errors name the spec and what is
// wrong with it; nothing is contacted except with create=true.
func Open(ctx context.Context, spec string, o Options) (origin.Store, error) {
	if spec == "" {
		return nil, fmt.Errorf("origin: empty origin URL (want dir:///path, s3://bucket, dynamodb://table or http://cache-node,...)")
	}
	if !strings.Contains(spec, "://") {
		return dir.Open(spec)
	}
	scheme, _, _ := strings.Cut(spec, "://")
	switch scheme {
	case "http", "https":
		if o.OpenHTTP == nil {
			return nil, fmt.Errorf("origin %q: a cache-tier origin is not supported here", spec)
		}
		var nodes []string
		for _, n := range strings.Split(spec, ",") {
			if n = strings.TrimSpace(n); n != "" {
				nodes = append(nodes, n)
			}
		}
		return o.OpenHTTP(nodes)
	}
	u, err := url.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("origin %q: %w", spec, err)
	}
	q := u.Query()
	create, err := boolParam(spec, q, "create")
	if err != nil {
		return nil, err
	}
	// The settings every AWS store shares, from the same parameters.
	conn := awsconn.Conn{Region: q.Get("region"), Endpoint: q.Get("endpoint"), HTTPClient: o.HTTPClient}
	switch u.Scheme {
	case "dir", "file":
		if u.Host != "" {
			return nil, fmt.Errorf("origin %q: want dir:///absolute/path (three slashes)", spec)
		}
		return dir.Open(u.Path)
	case "s3":
		pathStyle, err := boolParam(spec, q, "path-style")
		if err != nil {
			return nil, err
		}
		st, err := s3.New(ctx, s3.Config{
			Bucket:       u.Host,
			Prefix:       strings.TrimPrefix(u.Path, "/"),
			Conn:         conn,
			UsePathStyle: pathStyle,
			Logger:       o.Logger,
		})
		return opened(ctx, spec, st, err, create, "create bucket", (*s3.Store).CreateBucket)
	case "dynamodb":
		st, err := dynamodb.New(ctx, dynamodb.Config{Table: u.Host, Conn: conn, Logger: o.Logger})
		return opened(ctx, spec, st, err, create, "create table", (*dynamodb.Store).CreateTable)
	}
	return nil, fmt.Errorf("origin %q: unknown scheme %q (want dir, s3, dynamodb, http or https)", spec, u.Scheme)
}

// opened finishes opening an AWS store, st and err from its New: it names
// spec in New's error and, when create is set, makes the bucket or table
// with mk (what names the step in its error).
func opened[S origin.Store](ctx context.Context, spec string, st S, err error, create bool, what string, mk func(S, context.Context) error) (origin.Store, error) {
	if err != nil {
		return nil, fmt.Errorf("origin %q: %w", spec, err)
	}
	if create {
		if err := mk(st, ctx); err != nil {
			return nil, fmt.Errorf("origin %q: %s: %w", spec, what, err)
		}
	}
	return st, nil
}

// boolParam parses the URL parameter name as a bool; absent is false.
func boolParam(spec string, q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("origin %q: parameter %s=%q is not true or false", spec, name, v)
	}
	return b, nil
}
