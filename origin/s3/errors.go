package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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

// errorCode returns the S3 error code of a failed SDK call ("NoSuchKey"), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isNotFound reports a missing object (not a missing bucket).
func isNotFound(err error) bool {
	return httpStatus(err) == http.StatusNotFound && errorCode(err) != "NoSuchBucket"
}

// isConflict reports a failed precondition of a conditional write: 412, or
// 409 ConditionalRequestConflict (another conditional write in flight).
// Other 409s are not conflicts: versitygw's posix backend answers 409
// ExistingObjectIsDirectory or ObjectParentIsFile for name clashes, and
// those must not be retried as if another writer had won.
func isConflict(err error) bool {
	switch httpStatus(err) {
	case http.StatusPreconditionFailed:
		return true
	case http.StatusConflict:
		return errorCode(err) == "ConditionalRequestConflict"
	}
	return false
}

func isNotModified(err error) bool { return httpStatus(err) == http.StatusNotModified }

// fail turns an SDK error (after the SDK's retries) into the error the Store
// returns: it names the operation, bucket and object and wraps the sentinel
// callers branch on.
func (s *Store) fail(ctx context.Context, op, name string, err error) error {
	where := fmt.Sprintf("s3 %s s3://%s/%s", op, s.bucket, name)
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w: %w: %v", where, origin.ErrUnavailable, cerr, err)
		}
		return fmt.Errorf("%s: %w: %v", where, cerr, err)
	}
	switch code := httpStatus(err); {
	case code == 0, code >= 500, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout:
		return fmt.Errorf("%s: %w: %w", where, origin.ErrUnavailable, err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
}
