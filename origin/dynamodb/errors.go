package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/dataplane/dataplane/origin"
)

// httpStatus returns the HTTP status of a failed SDK call, or 0 when no
// response arrived (a network error).
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the DynamoDB error code of a failed SDK call
// ("ResourceNotFoundException"), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// throttleCodes are the answers DynamoDB gives when it sheds load; the SDK
// retries them, and what is left after retries is an unavailable origin.
var throttleCodes = map[string]bool{
	"ProvisionedThroughputExceededException": true,
	"ThrottlingException":                    true,
	"RequestLimitExceeded":                   true,
	"LimitExceededException":                 true,
	"InternalServerError":                    true,
	"ServiceUnavailable":                     true,
}

// fail turns an SDK error (after the SDK's retries) into the error the Store
// returns: it names the operation, table and key (what, if any) and wraps
// the sentinel callers branch on.
func (s *Store) fail(ctx context.Context, op, what string, err error) error {
	where := fmt.Sprintf("dynamodb %s table %s", op, s.table)
	if what != "" {
		where += " " + what
	}
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
	var invalid smithy.InvalidParamsError
	if errors.As(err, &invalid) {
		return fmt.Errorf("%s: %w", where, err)
	}
	code := errorCode(err)
	switch status := httpStatus(err); {
	case code == "ResourceNotFoundException":
		return fmt.Errorf("%s: %w: table does not exist (create it with CreateTable, or check Table, Region and Endpoint): %w", where, origin.ErrUnavailable, err)
	case throttleCodes[code], status == 0, status >= 500:
		return fmt.Errorf("%s: %w: %w", where, origin.ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
}
