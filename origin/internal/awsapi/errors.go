package awsapi

import (
	"context"
	"errors"
	"fmt"

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

// Fail turns an SDK error (after the SDK's retries) into the error a store
// returns: prefixed with where (the operation and what it was on), and
// wrapping the sentinel callers branch on: the context's error when ctx has
// ended (with origin.ErrUnavailable too for a deadline), else
// origin.ErrUnavailable when unavailable says the answer (or its absence)
// means the service is.
func Fail(ctx context.Context, where string, err error, unavailable bool) error {
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
	if unavailable {
		return fmt.Errorf("%s: %w: %w", where, origin.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}
