// Package awsapi is what the S3 and DynamoDB stores share of talking to an
// AWS-style service, beside the settings themselves (origin/awsconn): the
// one check of those settings, the one set-up of an SDK client with the
// dataplane's retry policy, the one mapping of SDK errors onto the
// origin's sentinels, and the server's clock read from the Date header of
// any answer. A store names what differs in a Service.
package awsapi

import (
	"cmp"
	"context"
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

	"github.com/dataplane/dataplane/origin/awsconn"
)

// Service is what the shared code says differently for each store.
type Service struct {
	// Name starts every error about the store's settings ("s3").
	Name string
	// ExampleEndpoint is a well-formed Endpoint, shown in errors about a
	// malformed one.
	ExampleEndpoint string
	// Container is what the store keeps its data in, as its Config field
	// and its create method name it ("Bucket": Config.Bucket,
	// CreateBucket).
	Container string
	// MissingCode is the error code of an answer saying the container does
	// not exist ("NoSuchBucket").
	MissingCode string
}

// Check checks the connection settings c and fills in their defaults; its
// errors name the service and the field. MaxRetries stays negative for
// never (see Retries).
func (s Service) Check(c *awsconn.Conn) error {
	if c.Endpoint != "" {
		if err := s.checkEndpoint(c.Endpoint); err != nil {
			return err
		}
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return fmt.Errorf("%s: Config.AccessKey and Config.SecretKey go together: set both or neither", s.Name)
	}
	c.Region = cmp.Or(c.Region, awsconn.DefaultRegion)
	c.MaxRetries = cmp.Or(c.MaxRetries, awsconn.DefaultMaxRetries)
	c.RetryBaseDelay = cmp.Or(max(c.RetryBaseDelay, 0), awsconn.DefaultRetryBaseDelay)
	c.RetryMaxDelay = cmp.Or(max(c.RetryMaxDelay, 0), awsconn.DefaultRetryMaxDelay)
	return nil
}

// checkEndpoint accepts an absolute http(s) URL with a host and nothing
// after the path.
func (s Service) checkEndpoint(ep string) error {
	u, err := url.Parse(ep)
	if err != nil {
		return fmt.Errorf("%s: Config.Endpoint %q is not a URL: %w", s.Name, ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: Config.Endpoint %q: scheme must be http or https, e.g. %s", s.Name, ep, s.ExampleEndpoint)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s: Config.Endpoint %q has no host, e.g. %s", s.Name, ep, s.ExampleEndpoint)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s: Config.Endpoint %q: bad port %q", s.Name, ep, p)
		}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%s: Config.Endpoint %q: want only scheme, host, port and path", s.Name, ep)
	}
	return nil
}

// Retries is how many times a request is retried under c, checked: 0 for
// never.
func Retries(c awsconn.Conn) int { return max(c.MaxRetries, 0) }

// NewClient makes a store's SDK client from the checked settings c:
// newFromConfig is the service's NewFromConfig, called with AWSConfig(c)
// and options, which set what is the store's own (path style, checksums).
func NewClient[C, O any](ctx context.Context, s Service, c awsconn.Conn, newFromConfig func(aws.Config, ...func(*O)) C, options ...func(*O)) (C, error) {
	awsCfg, err := s.AWSConfig(ctx, c)
	if err != nil {
		var none C
		return none, err
	}
	return newFromConfig(awsCfg, options...), nil
}

// AWSConfig returns the SDK configuration a client is made from, for the
// checked settings c: Region; Endpoint if set, so that no endpoint of the
// environment or shared config (AWS_ENDPOINT_URL_S3) replaces it; the
// static credentials if any, else the SDK's default chain (environment,
// shared config files, instance or task role); HTTPClient if set; Retryer,
// with its attempts fixed so that the environment's AWS_MAX_ATTEMPTS does
// not replace them.
func (s Service) AWSConfig(ctx context.Context, c awsconn.Conn) (aws.Config, error) {
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
			return aws.Config{}, fmt.Errorf("%s: load AWS configuration: %w", s.Name, err)
		}
	}
	if c.Endpoint != "" {
		awsCfg.BaseEndpoint = aws.String(c.Endpoint)
		awsCfg.ConfigSources = append([]any{ignoreConfiguredEndpoints{}}, awsCfg.ConfigSources...)
	}
	if c.HTTPClient != nil {
		awsCfg.HTTPClient = c.HTTPClient
	}
	awsCfg.Retryer = func() aws.Retryer { return Retryer(c) }
	awsCfg.RetryMaxAttempts = Retries(c) + 1
	return awsCfg, nil
}

// ignoreConfiguredEndpoints is a configuration source that says what
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true says: a client takes its
// endpoint from aws.Config.BaseEndpoint, never from a service's endpoint
// in the environment or shared config. It comes first among the sources,
// so it wins.
type ignoreConfiguredEndpoints struct{}

// GetIgnoreConfiguredEndpoints implements the SDK's
// IgnoreConfiguredEndpointsProvider.
func (ignoreConfiguredEndpoints) GetIgnoreConfiguredEndpoints(context.Context) (value, found bool, err error) {
	return true, true, nil
}

// Retryer returns the SDK retryer of the dataplane's policy for the
// checked settings c: Retries(c) retries with Backoff between them, and no
// client-side retry quota: during an outage the quota would turn every
// call into an immediate "quota exceeded" long after the origin is back,
// while the bounded attempts and backoff limit the load on a struggling
// origin anyway.
func Retryer(c awsconn.Conn) aws.Retryer {
	base, maxDelay := c.RetryBaseDelay, c.RetryMaxDelay
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = Retries(c) + 1
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
