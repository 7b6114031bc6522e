// Package awsapi is what the S3 and DynamoDB stores share of talking to an
// AWS-style service: the check of the connection settings every such store
// has (Conn), the SDK configuration with the dataplane's retry policy, the
// classification of SDK errors into the origin's sentinels, and the
// server's clock read from the Date header of any answer.
package awsapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Defaults for Conn fields left zero; the stores' Config fields of the same
// names default to these.
const (
	DefaultRegion         = "us-east-1"
	DefaultMaxRetries     = 3
	DefaultRetryBaseDelay = 50 * time.Millisecond
	DefaultRetryMaxDelay  = 2 * time.Second
)

// Conn says how a store reaches its service: the Config fields every AWS
// store has, under the same names. Check checks them and fills in defaults.
type Conn struct {
	// Service names the store at the start of every error ("s3").
	Service string
	// ExampleEndpoint is a well-formed Endpoint, shown in errors about a
	// malformed one.
	ExampleEndpoint string
	// Region is the signing region; default DefaultRegion.
	Region string
	// Endpoint is the base URL of a compatible server; empty means AWS's
	// own endpoint for Region.
	Endpoint string
	// AccessKey, SecretKey and SessionToken are static credentials; empty
	// means the SDK's default chain.
	AccessKey, SecretKey, SessionToken string
	// MaxRetries is how many times a request that failed transiently is
	// retried; 0 means DefaultMaxRetries, negative means never (Check
	// leaves 0 then).
	MaxRetries int
	// RetryBaseDelay and RetryMaxDelay shape the backoff between retries;
	// zero means DefaultRetryBaseDelay and DefaultRetryMaxDelay.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// HTTPClient sends requests; nil means the SDK's default client.
	HTTPClient aws.HTTPClient
}

// Check checks the endpoint and the credentials and fills in defaults. It
// must be called once: after it, MaxRetries 0 means never.
func (c *Conn) Check() error {
	if c.Endpoint != "" {
		if err := c.checkEndpoint(); err != nil {
			return err
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return fmt.Errorf("%s: Config.AccessKey and Config.SecretKey go together: set both or neither", c.Service)
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
	return nil
}

// checkEndpoint accepts an absolute http(s) URL with a host and nothing
// after the path.
func (c *Conn) checkEndpoint() error {
	ep := c.Endpoint
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("%s: Config.Endpoint %q is not a URL: %w", c.Service, ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: Config.Endpoint %q: scheme must be http or https, e.g. %s", c.Service, ep, c.ExampleEndpoint)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s: Config.Endpoint %q has no host, e.g. %s", c.Service, ep, c.ExampleEndpoint)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s: Config.Endpoint %q: bad port %q", c.Service, ep, p)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%s: Config.Endpoint %q: want only scheme, host, port and path", c.Service, ep)
	}
	return nil
}

// AWSConfig returns the SDK configuration a service client is made from:
// Region; the static credentials if any, else the SDK's default chain
// (environment, shared config files, instance or task role); HTTPClient if
// set; and Retryer. The endpoint is the client's own option (BaseEndpoint),
// so that nothing in the environment overrides it.
func (c *Conn) AWSConfig(ctx context.Context) (aws.Config, error) {
	var awsCfg aws.Config
	if c.AccessKey != "" {
		awsCfg = aws.Config{
			Region:      c.Region,
			Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, c.SessionToken)),
		}
	} else {
		var err error
		awsCfg, err = config.LoadDefaultConfig(ctx, config.WithRegion(c.Region))
		if err != nil {
			return aws.Config{}, fmt.Errorf("%s: load AWS configuration: %w", c.Service, err)
		}
	}
	if c.HTTPClient != nil {
		awsCfg.HTTPClient = c.HTTPClient
	}
	awsCfg.Retryer = c.Retryer
	return awsCfg, nil
}

// Retryer returns the SDK retryer of the dataplane's policy: MaxRetries
// retries with Backoff between them, and no client-side retry quota: during
// an outage the quota would turn every call into an immediate "quota
// exceeded" long after the origin is back, while the bounded attempts and
// backoff limit the load on a struggling origin anyway.
func (c *Conn) Retryer() aws.Retryer {
	base, maxDelay := c.RetryBaseDelay, c.RetryMaxDelay
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = c.MaxRetries + 1
		o.MaxBackoff = maxDelay
		o.RateLimiter = ratelimit.None
		// The SDK's legacy backoff starts at a second; a dataplane wants
		// its retries within its freshness budget.
		o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
			return Backoff(attempt, base, maxDelay), nil
		})
	})
}

// Backoff is the delay before retry number attempt (1-based): exponential
// from base, capped at max, with jitter over its upper half.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + rand.N(d/2+1)
}

// HTTPStatus returns the HTTP status of a failed SDK call, or 0 when no
// response arrived (a network error).
func HTTPStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
