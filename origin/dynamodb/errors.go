package dynamodb

import (
	"context"
	"fmt"
)

// fail turns an SDK error (after the SDK's retries) into the error the Store
// returns, naming the operation, table and key (what, if any; see
// Service.Fail).
func (s *Store) fail(ctx context.Context, op, what string, err error) error {
	where := fmt.Sprintf("dynamodb %s table %s", op, s.table)
	if what != "" {
		where += " " + what
	}
	return service.Fail(ctx, where, err)
}
