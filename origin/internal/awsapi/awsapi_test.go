package awsapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/awsconn"
)

var testService = Service{Name: "s3", ExampleEndpoint: "http://127.0.0.1:7070", Container: "Bucket", MissingCode: "NoSuchBucket"}

// answer is the error of an SDK call the service answered with status and
// code ("" for none), as the SDK wraps it.
func answer(status int, code string) error {
	var err error = &smithy.GenericAPIError{Code: code, Message: "boom"}
	if code == "" {
		err = errors.New("boom")
	}
	return &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
		Err:      err,
	}
}

// TestFail checks the sentinels a store's error wraps, one mapping for
// both stores: the context's error once it has ended (a deadline also
// counts as the origin unavailable); origin.ErrUnavailable for no answer,
// a server error, throttling (S3's 503 SlowDown, DynamoDB's 400
// ProvisionedThroughputExceededException) and timeouts (408, S3's 400
// RequestTimeout); nothing for other refusals, for a request the SDK
// refused to send, and for a missing bucket or table, whose error says
// so; and that the message names where and the cause.
func TestFail(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
	bg := context.Background()
	for _, tt := range []struct {
		name      string
		ctx       context.Context
		err       error
		want, not []error
		says      string
	}{
		{"network", bg, errors.New("boom: connection refused"), []error{origin.ErrUnavailable}, nil, ""},
		{"500", bg, answer(500, "InternalError"), []error{origin.ErrUnavailable}, nil, ""},
		{"503 SlowDown", bg, answer(503, "SlowDown"), []error{origin.ErrUnavailable}, nil, ""},
		{"429", bg, answer(429, ""), []error{origin.ErrUnavailable}, nil, ""},
		{"408", bg, answer(408, ""), []error{origin.ErrUnavailable}, nil, ""},
		{"400 throughput", bg, answer(400, "ProvisionedThroughputExceededException"), []error{origin.ErrUnavailable}, nil, ""},
		{"400 ThrottlingException", bg, answer(400, "ThrottlingException"), []error{origin.ErrUnavailable}, nil, ""},
		{"400 RequestTimeout", bg, answer(400, "RequestTimeout"), []error{origin.ErrUnavailable}, nil, ""},
		{"403", bg, answer(403, "AccessDenied"), nil, []error{origin.ErrUnavailable}, ""},
		{"400 validation", bg, answer(400, "ValidationException"), nil, []error{origin.ErrUnavailable}, ""},
		{"invalid params", bg, smithy.InvalidParamsError{Context: "GetObjectInput"}, nil, []error{origin.ErrUnavailable}, ""},
		{"missing bucket", bg, answer(404, "NoSuchBucket"), nil, []error{origin.ErrUnavailable, origin.ErrNotFound}, "bucket does not exist (create it with CreateBucket, or check Config.Bucket, Region and Endpoint)"},
		{"canceled", canceled, answer(500, ""), []error{context.Canceled}, []error{origin.ErrUnavailable}, ""},
		{"deadline", expired, answer(403, ""), []error{context.DeadlineExceeded, origin.ErrUnavailable}, nil, ""},
	} {
		err := testService.Fail(tt.ctx, "s3 get s3://b/k", tt.err)
		for _, w := range tt.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v does not wrap %v", tt.name, err, w)
			}
		}
		for _, n := range tt.not {
			if errors.Is(err, n) {
				t.Errorf("%s: %v wraps %v", tt.name, err, n)
			}
		}
		if !strings.HasPrefix(err.Error(), "s3 get s3://b/k: ") || !strings.Contains(err.Error(), tt.err.Error()) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: %q does not name where and the cause (and %q)", tt.name, err, tt.says)
		}
	}
}

// TestCheck checks the defaults and the refusals of the shared settings,
// each refusal naming the service and the field.
func TestCheck(t *testing.T) {
	c := awsconn.Conn{}
	if err := testService.Check(&c); err != nil {
		t.Fatal(err)
	}
	if c.Region != awsconn.DefaultRegion || c.MaxRetries != awsconn.DefaultMaxRetries || c.RetryBaseDelay != awsconn.DefaultRetryBaseDelay || c.RetryMaxDelay != awsconn.DefaultRetryMaxDelay {
		t.Errorf("defaults: %+v", c)
	}
	never := awsconn.Conn{MaxRetries: -1}
	if err := testService.Check(&never); err != nil || Retries(never) != 0 {
		t.Errorf("MaxRetries -1: err %v, %d retries, want 0", err, Retries(never))
	}
	dyn := Service{Name: "dynamodb"}
	for _, bad := range []awsconn.Conn{
		{Endpoint: "ftp://h"}, {Endpoint: "http://"}, {Endpoint: "http://h:0"}, {Endpoint: "http://h:99999"},
		{Endpoint: "http://h?x=1"}, {AccessKey: "a"}, {SecretKey: "s"},
	} {
		err := dyn.Check(&bad)
		if err == nil || !strings.HasPrefix(err.Error(), "dynamodb: Config.") {
			t.Errorf("%+v: err %v, want a refusal naming the service and the field", bad, err)
		}
	}
}
