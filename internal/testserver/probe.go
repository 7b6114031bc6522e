package testserver

import (
	"context"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// probeTimeout bounds one readiness request: generous, since a server
// starting on a loaded machine is slow, and dynalite crashes when a client
// gives up on a request it is still serving.
const probeTimeout = 5 * time.Second

// probeHTTP sends one request per connection with no SDK retries, so a
// probe reports the server's state now.
func probeHTTP() *http.Client {
	return &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// s3Ready is ready once a signed ListBuckets succeeds: an open port is not
// enough, since a server may answer 503 ("server not initialized", as MinIO
// does) or 403 for a moment after it starts listening.
func s3Ready(endpoint, region, access, secret string) func() error {
	client := s3.New(s3.Options{
		Region:           region,
		BaseEndpoint:     aws.String(endpoint),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(access, secret, ""),
		HTTPClient:       probeHTTP(),
		RetryMaxAttempts: 1,
	})
	return probeWith(func(ctx context.Context) error {
		_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
		return err
	})
}

// dynamoReady is ready once a signed ListTables succeeds.
func dynamoReady(endpoint, region, access, secret string) func() error {
	client := ddb.New(ddb.Options{
		Region:           region,
		BaseEndpoint:     aws.String(endpoint),
		Credentials:      credentials.NewStaticCredentialsProvider(access, secret, ""),
		HTTPClient:       probeHTTP(),
		RetryMaxAttempts: 1,
	})
	return probeWith(func(ctx context.Context) error {
		_, err := client.ListTables(ctx, &ddb.ListTablesInput{Limit: aws.Int32(1)})
		return err
	})
}

// probeWith is the readiness probe that makes request, bounded by
// probeTimeout.
func probeWith(request func(context.Context) error) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		return request(ctx)
	}
}
