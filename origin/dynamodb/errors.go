package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/smithy-go"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

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
	var invalid smithy.InvalidParamsError
	if errors.As(err, &invalid) {
		return awsapi.Fail(ctx, where, err, false)
	}
	code := awsapi.ErrorCode(err)
	if code == "ResourceNotFoundException" && ctx.Err() == nil {
		return fmt.Errorf("%s: %w: table does not exist (create it with CreateTable, or check Table, Region and Endpoint): %w", where, origin.ErrUnavailable, err)
	}
	status := awsapi.HTTPStatus(err)
	return awsapi.Fail(ctx, where, err, throttleCodes[code] || status == 0 || status >= 500)
}
