package dynamodb

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultRegion         = "us-east-1"
	DefaultMaxRetries     = 3
	DefaultRetryBaseDelay = 50 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
	DefaultLogShards      = 8
	// MaxLogShards bounds Config.LogShards: every log read costs one Query
	// per shard of each bucket it visits.
	MaxLogShards = 64
)

// MaxItemSize is DynamoDB's limit on one item: attribute names and values
// together.
const MaxItemSize = 400 << 10

// HTTPClient sends the store's HTTP requests; *http.Client is one. Wrap one
// to inject latency or faults, or to count requests.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Config says which table a Store uses and how it reaches it.
type Config struct {
	// Table is the table's name (3 to 255 of [A-Za-z0-9_.-]). Required.
	// CreateTable makes it with the expected key schema.
	Table string
	// Region is the signing region; default DefaultRegion.
	Region string
	// Endpoint is the base URL of a DynamoDB-compatible server, e.g.
	// "http://127.0.0.1:4567". Empty means AWS's own endpoint for Region.
	Endpoint string
	// AccessKey and SecretKey (and SessionToken, if any) are static
	// credentials. Leave them empty to use the SDK's default chain
	// (environment, shared config files, instance or task role).
	AccessKey, SecretKey, SessionToken string
	// HTTPClient sends requests; nil means the SDK's default client.
	HTTPClient HTTPClient
	// MaxRetries is how many times a request that failed transiently
	// (network error, 5xx, throttling) is retried; 0 means
	// DefaultMaxRetries, negative means never.
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the backoff between retries:
	// exponential from the base, capped at the max, with jitter. Zero means
	// DefaultRetryBaseDelay and DefaultRetryMaxDelay.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// LogShards is how many partitions the change log of one bucket is
	// spread over (see the package documentation); 0 means
	// DefaultLogShards. It applies to buckets this Store opens: a bucket
	// keeps the shard count it was opened with (recorded in its marker),
	// so writers and readers with different settings still agree.
	LogShards int
	// Logger receives warnings (a change log item that does not parse, a
	// replaced snapshot whose chunks could not be deleted); nil means
	// slog.Default().
	Logger *slog.Logger
}

// validate checks c and fills in defaults.
func (c *Config) validate() error {
	if c.Table == "" {
		return errors.New("dynamodb: Config.Table is required")
	}
	if len(c.Table) < 3 || len(c.Table) > 255 {
		return fmt.Errorf("dynamodb: Config.Table %q: a table name is 3 to 255 characters", c.Table)
	}
	for i := 0; i < len(c.Table); i++ {
		if ch := c.Table[i]; !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return fmt.Errorf("dynamodb: Config.Table %q: character %q not allowed (use A-Z, a-z, 0-9, '_', '-', '.')", c.Table, ch)
		}
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			return err
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("dynamodb: Config.AccessKey and Config.SecretKey go together: set both or neither")
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.RetryBaseDelay <= 0 {
		c.RetryBaseDelay = DefaultRetryBaseDelay
	}
	if c.RetryMaxDelay <= 0 {
		c.RetryMaxDelay = DefaultRetryMaxDelay
	}
	if c.LogShards == 0 {
		c.LogShards = DefaultLogShards
	}
	if c.LogShards < 1 || c.LogShards > MaxLogShards {
		return fmt.Errorf("dynamodb: Config.LogShards %d not in [1, %d]", c.LogShards, MaxLogShards)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// checkEndpoint accepts an absolute http(s) URL with a host and nothing
// after the path.
func checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("dynamodb: Config.Endpoint %q is not a URL: %w", ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("dynamodb: Config.Endpoint %q: scheme must be http or https, e.g. http://127.0.0.1:4567", ep)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("dynamodb: Config.Endpoint %q has no host, e.g. http://127.0.0.1:4567", ep)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("dynamodb: Config.Endpoint %q: bad port %q", ep, p)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("dynamodb: Config.Endpoint %q: want only scheme, host, port and path", ep)
	}
	return nil
}
