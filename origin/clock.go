package origin

import (
	"context"
	"time"
)

// Clock is implemented by stores that can tell the time on their side (S3
// and DynamoDB put it in the Date header of every answer). A publisher
// compares it with its own clock before it takes versions, so that a host
// whose clock runs far ahead (or behind) is refused before it writes
// versions every node would refuse, or that every log reader has already
// passed.
type Clock interface {
	// ServerTime returns the origin's time as of one answer, truncated to
	// whole seconds (an HTTP Date). It costs one small request.
	ServerTime(ctx context.Context) (time.Time, error)
}
