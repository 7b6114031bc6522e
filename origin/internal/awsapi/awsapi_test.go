package awsapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/origin"
)

// TestFail checks the sentinels a store's error wraps: the context's error
// once it has ended (a deadline also counts as the origin unavailable),
// else origin.ErrUnavailable exactly when the caller says so; and that the
// message names where.
func TestFail(t *testing.T) {
	boom := errors.New("boom")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel2()
	for _, tt := range []struct {
		name        string
		ctx         context.Context
		unavailable bool
		want, not   []error
	}{
		{"answer", context.Background(), false, []error{boom}, []error{origin.ErrUnavailable}},
		{"unavailable", context.Background(), true, []error{boom, origin.ErrUnavailable}, nil},
		{"canceled", canceled, true, []error{context.Canceled}, []error{origin.ErrUnavailable}},
		{"deadline", expired, false, []error{context.DeadlineExceeded, origin.ErrUnavailable}, nil},
	} {
		err := Fail(tt.ctx, "s3 get s3://b/k", boom, tt.unavailable)
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
		if !strings.HasPrefix(err.Error(), "s3 get s3://b/k: ") || !strings.Contains(err.Error(), "boom") {
			t.Errorf("%s: %q does not name where and the cause", tt.name, err)
		}
	}
}

// TestCheck checks the defaults and the refusals of the shared settings,
// each refusal naming the service and the field.
func TestCheck(t *testing.T) {
	c := Conn{Service: "s3", MaxRetries: -1}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if c.Region != DefaultRegion || c.MaxRetries != 0 || c.RetryBaseDelay != DefaultRetryBaseDelay || c.RetryMaxDelay != DefaultRetryMaxDelay {
		t.Errorf("defaults: %+v", c)
	}
	for _, bad := range []Conn{
		{Endpoint: "ftp://h"}, {Endpoint: "http://"}, {Endpoint: "http://h:0"}, {Endpoint: "http://h:99999"},
		{Endpoint: "http://h?x=1"}, {AccessKey: "a"}, {SecretKey: "s"},
	} {
		bad.Service = "dynamodb"
		err := bad.Check()
		if err == nil || !strings.HasPrefix(err.Error(), "dynamodb: Config.") {
			t.Errorf("%+v: err %v, want a refusal naming the service and the field", bad, err)
		}
	}
}
