// Package awsconn holds the connection settings the S3 and DynamoDB stores
// share: where the service answers, the credentials a request is signed
// with, the HTTP client that sends it and how failed requests are retried.
// Both s3.Config and dynamodb.Config embed a Conn, so each setting is
// stated, documented and checked once:
//
//	s3.Config{Bucket: "b", UsePathStyle: true, Conn: awsconn.Conn{Endpoint: "http://127.0.0.1:7070"}}
//	dynamodb.Config{Table: "t", Conn: awsconn.Conn{Region: "eu-west-1"}}
//
// The fields are promoted, so cfg.Endpoint reads and sets the Conn's.
package awsconn

import (
	"net/http"
	"time"
)

// Defaults for Conn fields left zero.
const (
	DefaultRegion         = "us-east-1"
	DefaultMaxRetries     = 3
	DefaultRetryBaseDelay = 50 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
)

// HTTPClient sends a store's HTTP requests; *http.Client is one. Wrap one
// to inject latency or faults, or to count requests.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Conn says how a store reaches its service. The zero Conn reaches AWS in
// DefaultRegion with the SDK's default credentials and client.
type Conn struct {
	// Region is the signing region; default DefaultRegion.
	Region string
	// Endpoint is the base URL of a compatible server, e.g.
	// "http://127.0.0.1:7070": http or https, a host, an optional port and
	// path, nothing else. Empty means AWS's own endpoint for Region. A set
	// Endpoint wins over the SDK's environment (AWS_ENDPOINT_URL...).
	Endpoint string
	// AccessKey and SecretKey (and SessionToken, if any) are static
	// credentials; set both or neither. Leave them empty to use the SDK's
	// default chain (environment, shared config files, instance or task
	// role).
	AccessKey, SecretKey, SessionToken string
	// HTTPClient sends requests; nil means the SDK's default client.
	HTTPClient HTTPClient
	// MaxRetries is how many times a request that failed transiently
	// (network error, 5xx, throttling, timeout) is retried; 0 means
	// DefaultMaxRetries, negative means never. It also bounds a store's own
	// resending (DynamoDB's unprocessed batch writes). The SDK's
	// environment (AWS_MAX_ATTEMPTS) does not change it.
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the backoff between retries:
	// exponential from the base, capped at the max, with jitter. Zero means
	// DefaultRetryBaseDelay and DefaultRetryMaxDelay.
	RetryBaseDelay, RetryMaxDelay time.Duration
}
