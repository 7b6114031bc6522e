package origin

import (
	"context"

	"github.com/dataplane/dataplane/record"
)

// Pending is an optional capability of a Store: a durable note of the
// publishes in flight, so that a crash between a compare-and-swap and its
// change-log append can be found and repaired without listing every record.
//
// A publisher notes a change (PutPending) before its compare-and-swap and
// clears it (DeletePending) once the change is in the log; a note older than
// the publish budget therefore marks a publish that crashed or overran, and
// the publisher's repair pass (publisher.Publisher.Repair) finishes it. A
// Store without this capability is still correct for every publish that
// completes; only a crash between the two writes stays unrepaired.
//
// Notes are small (a change, no value), idempotent (putting or deleting the
// same change twice is harmless) and independent of the records and the log.
type Pending interface {
	// PutPending durably notes c as in flight.
	PutPending(ctx context.Context, c record.Change) error
	// DeletePending removes the note of c; a missing note is no error.
	DeletePending(ctx context.Context, c record.Change) error
	// ListPending returns up to limit notes (limit <= 0: all), in no
	// particular order.
	ListPending(ctx context.Context, limit int) ([]record.Change, error)
}
