package awsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"

	"github.com/dataplane/dataplane/origin"
)

// ErrorCode returns the service's error code of a failed SDK call
// ("NoSuchKey", "ResourceNotFoundException"), or "".
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
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

// Unavailable reports whether a failed SDK call (after the SDK's retries)
// means the service is unavailable: no answer at all (a network error), a
// server error (5xx), or the service shedding load or timing out (429,
// 408, or an error code the SDK counts as throttling or a timeout, such
// as DynamoDB's ProvisionedThroughputExceededException, which comes as a
// 400, and S3's RequestTimeout). A request the SDK refused to send
// (invalid parameters) is not.
func Unavailable(err error) bool {
	var invalid smithy.InvalidParamsError
	if errors.As(err, &invalid) {
		return false
	}
	switch status := HTTPStatus(err); {
	case status == 0, status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return true
	}
	code := ErrorCode(err)
	_, throttled := retry.DefaultThrottleErrorCodes[code]
	_, timedOut := retry.DefaultRetryableErrorCodes[code]
	return throttled || timedOut
}

// Fail turns an SDK error (after the SDK's retries) into the error a store
// returns: prefixed with where (the operation and what it was on), and
// wrapping the sentinel callers branch on: the context's error when ctx has
// ended (with origin.ErrUnavailable too for a deadline), else
// origin.ErrUnavailable when Unavailable(err). An answer that the store's
// bucket or table does not exist (s.MissingCode) is no sentinel: the
// origin answered, and the settings are wrong; the error says so and what
// to do.
func (s Service) Fail(ctx context.Context, where string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		detail := ""
		if !errors.Is(err, cerr) {
			detail = ": " + err.Error()
		}
		if errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w: %w%s", where, origin.ErrUnavailable, cerr, detail)
		}
		return fmt.Errorf("%s: %w%s", where, cerr, detail)
	}
	if s.MissingCode != "" && ErrorCode(err) == s.MissingCode {
		return fmt.Errorf("%s: %s does not exist (create it with Create%s, or check Config.%s, Region and Endpoint): %w",
			where, strings.ToLower(s.Container), s.Container, s.Container, err)
	}
	if Unavailable(err) {
		return fmt.Errorf("%s: %w: %w", where, origin.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
