package dynamodb

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

// Defaults for Config fields left zero.
const (
	DefaultRegion         = awsapi.DefaultRegion         // "us-east-1"
	DefaultMaxRetries     = awsapi.DefaultMaxRetries     // 3
	DefaultRetryBaseDelay = awsapi.DefaultRetryBaseDelay // 50ms
	DefaultRetryMaxDelay  = awsapi.DefaultRetryMaxDelay  // 2s
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

// validate checks c and fills in defaults; it returns c's connection
// settings, checked and defaulted.
func (c *Config) validate() (awsapi.Conn, error) {
	if c.Table == "" {
		return awsapi.Conn{}, errors.New("dynamodb: Config.Table is required")
	}
	if len(c.Table) < 3 || len(c.Table) > 255 {
		return awsapi.Conn{}, fmt.Errorf("dynamodb: Config.Table %q: a table name is 3 to 255 characters", c.Table)
	}
	for i := 0; i < len(c.Table); i++ {
		if ch := c.Table[i]; !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '-' || ch == '.') {
			return awsapi.Conn{}, fmt.Errorf("dynamodb: Config.Table %q: character %q not allowed (use A-Z, a-z, 0-9, '_', '-', '.')", c.Table, ch)
		}
	}
	conn := awsapi.Conn{
		Service: "dynamodb", ExampleEndpoint: "http://127.0.0.1:4567",
		Region: c.Region, Endpoint: c.Endpoint,
		AccessKey: c.AccessKey, SecretKey: c.SecretKey, SessionToken: c.SessionToken,
		MaxRetries: c.MaxRetries, RetryBaseDelay: c.RetryBaseDelay, RetryMaxDelay: c.RetryMaxDelay,
		HTTPClient: c.HTTPClient,
	}
	if err := conn.Check(); err != nil {
		return awsapi.Conn{}, err
	}
	if c.LogShards == 0 {
		c.LogShards = DefaultLogShards
	}
	if c.LogShards < 1 || c.LogShards > MaxLogShards {
		return awsapi.Conn{}, fmt.Errorf("dynamodb: Config.LogShards %d not in [1, %d]", c.LogShards, MaxLogShards)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return conn, nil
}
