package s3

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dataplane/dataplane/origin/internal/awsapi"
)

// isNotFound reports a missing object (not a missing bucket).
func isNotFound(err error) bool {
	return awsapi.HTTPStatus(err) == http.StatusNotFound && awsapi.ErrorCode(err) != "NoSuchBucket"
}

// isConflict reports a failed precondition of a conditional write: 412, or
// 409 ConditionalRequestConflict (another conditional write in flight).
// Other 409s are not conflicts: versitygw's posix backend answers 409
// ExistingObjectIsDirectory or ObjectParentIsFile for name clashes, and
// those must not be retried as if another writer had won.
func isConflict(err error) bool {
	switch awsapi.HTTPStatus(err) {
	case http.StatusPreconditionFailed:
		return true
	case http.StatusConflict:
		return awsapi.ErrorCode(err) == "ConditionalRequestConflict"
	}
	return false
}

func isNotModified(err error) bool { return awsapi.HTTPStatus(err) == http.StatusNotModified }

// fail turns an SDK error (after the SDK's retries) into the error the Store
// returns, naming the operation, bucket and object (see Service.Fail).
func (s *Store) fail(ctx context.Context, op, name string, err error) error {
	return service.Fail(ctx, fmt.Sprintf("s3 %s s3://%s/%s", op, s.bucket, name), err)
}
