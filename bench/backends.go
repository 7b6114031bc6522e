package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/dataplane/dataplane/internal/testserver"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
	"github.com/dataplane/dataplane/origin/dynamodb"
	"github.com/dataplane/dataplane/origin/s3"
)

// Backends are the origin servers of a run: started here as child
// processes, or reached at endpoints the caller gave.
type Backends struct {
	// S3 and Dynamo are the servers' endpoints; a zero Endpoint (URL "")
	// means that backend is unavailable, and Missing says why.
	S3, Dynamo Endpoint
	// Missing maps an unavailable backend to the reason.
	Missing map[Backend]string

	closers []io.Closer
}

// StartBackends connects to, or starts, the servers the options of cfg
// need. A server that cannot be started is recorded in Missing with the
// reason (the caller decides whether to skip its options or fail); only
// unexpected errors are returned.
func StartBackends(cfg Config) (*Backends, error) {
	b := &Backends{Missing: make(map[Backend]string)}
	need := map[Backend]bool{}
	for _, o := range cfg.Options {
		need[o.Origin] = true
	}
	if need[S3] {
		if cfg.S3.URL != "" {
			b.S3 = cfg.S3
		} else if srv, err := testserver.LaunchS3Binary(cfg.S3.Binary); err != nil {
			b.Missing[S3] = err.Error()
		} else {
			b.closers = append(b.closers, srv)
			b.S3 = Endpoint{URL: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: srv.Region}
		}
	}
	if need[DynamoDB] {
		if cfg.Dynamo.URL != "" {
			b.Dynamo = cfg.Dynamo
		} else if srv, err := testserver.LaunchDynamoBinary(cfg.Dynamo.Binary); err != nil {
			b.Missing[DynamoDB] = err.Error()
		} else {
			// dynalite (a stand-in: real DynamoDB has no such failure) dies
			// of a connection closed under a request now and then on a
			// loaded machine; it comes back on its address with its data,
			// and the run sees a short outage instead of losing the option.
			srv.RestartOnCrash.Store(true)
			b.closers = append(b.closers, srv)
			b.Dynamo = Endpoint{URL: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: srv.Region}
		}
	}
	return b, nil
}

// Close stops the servers StartBackends started.
func (b *Backends) Close() error {
	var errs []error
	for _, c := range b.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Describe says where each backend is, for the report.
func (b *Backends) Describe() map[Backend]string {
	out := map[Backend]string{}
	if b.S3.URL != "" {
		out[S3] = b.S3.URL
	}
	if b.Dynamo.URL != "" {
		out[DynamoDB] = b.Dynamo.URL
	}
	for k, v := range b.Missing {
		out[k] = "UNAVAILABLE: " + firstLine(v)
	}
	return out
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// storeFactory opens stores on one option's bucket or table, each with its
// own HTTP client (so each can sit in its own region).
type storeFactory func(ctx context.Context, client *http.Client) (origin.Store, error)

var discard = slog.New(slog.DiscardHandler)

// factory returns the store factory of opt's origin, after creating the
// bucket or table named name.
func (b *Backends) factory(ctx context.Context, opt Option, name string) (storeFactory, error) {
	switch opt.Origin {
	case S3:
		ep := b.S3
		if ep.URL == "" {
			return nil, fmt.Errorf("S3 server unavailable: %s", b.Missing[S3])
		}
		return createdFactory(ctx, "create bucket "+name, func(ctx context.Context, client *http.Client) (*s3.Store, error) {
			return s3.New(ctx, s3.Config{Bucket: name, Conn: ep.conn(client), UsePathStyle: true, Logger: discard})
		}, (*s3.Store).CreateBucket)
	case DynamoDB:
		ep := b.Dynamo
		if ep.URL == "" {
			return nil, fmt.Errorf("DynamoDB server unavailable: %s", b.Missing[DynamoDB])
		}
		return createdFactory(ctx, "create table "+name, func(ctx context.Context, client *http.Client) (*dynamodb.Store, error) {
			return dynamodb.New(ctx, dynamodb.Config{Table: name, Conn: ep.conn(client), Logger: discard})
		}, (*dynamodb.Store).CreateTable)
	}
	return nil, fmt.Errorf("unknown origin %q", opt.Origin)
}

// createdFactory opens a first store with open, makes its bucket or table
// with create (what names it in the error), and returns the factory of
// stores open makes.
func createdFactory[S origin.Store](ctx context.Context, what string, open func(context.Context, *http.Client) (S, error), create func(S, context.Context) error) (storeFactory, error) {
	st, err := open(ctx, nil)
	if err != nil {
		return nil, err
	}
	if err := create(st, ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return func(ctx context.Context, client *http.Client) (origin.Store, error) {
		st, err := open(ctx, client)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return st, nil
	}, nil
}

// conn is how a store reaches ep's server through client (nil: the SDK's
// own client, never an interface holding a nil *http.Client), with two
// retries.
func (ep Endpoint) conn(client *http.Client) awsconn.Conn {
	c := awsconn.Conn{Endpoint: ep.URL, Region: ep.Region, AccessKey: ep.AccessKey, SecretKey: ep.SecretKey, MaxRetries: 2}
	if client != nil {
		c.HTTPClient = client
	}
	return c
}
