package origin

import (
	"context"
	"errors"
	"fmt"

	"github.com/dataplane/dataplane/record"
)

// ErrStale means Publish was given a version older than the one stored: a
// newer write already happened, and this one must not overwrite it.
var ErrStale = errors.New("older than stored version")

// maxCASAttempts bounds Publish's retries when other writers keep winning.
const maxCASAttempts = 8

// Publish makes rec the state of its key if rec.Version is newer than the
// stored version, then appends the change to the log. It is idempotent by
// version: publishing a record whose version is already stored only
// re-appends the log entry (repairing a crash between the two writes) and
// reports written=false. A stored newer version yields ErrStale.
func Publish(ctx context.Context, s Store, rec record.Record) (written bool, err error) {
	if err := rec.Validate(); err != nil {
		return false, err
	}
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		var prev record.Version
		cur, err := s.Get(ctx, rec.Namespace, rec.Key, 0)
		switch {
		case err == nil:
			prev = cur.Version
		case errors.Is(err, ErrNotFound):
		default:
			return false, fmt.Errorf("publish %s/%s: read current: %w", rec.Namespace, rec.Key, err)
		}
		if prev > rec.Version {
			return false, fmt.Errorf("publish %s/%s@%s: %w %s", rec.Namespace, rec.Key, rec.Version, ErrStale, prev)
		}
		if prev < rec.Version {
			err = s.CompareAndSwap(ctx, rec, prev)
			if errors.Is(err, ErrConflict) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("publish %s/%s: %w", rec.Namespace, rec.Key, err)
			}
			written = true
		}
		if err := s.AppendLog(ctx, rec.Change()); err != nil {
			return written, fmt.Errorf("publish %s/%s: append change log: %w", rec.Namespace, rec.Key, err)
		}
		return written, nil
	}
	return false, fmt.Errorf("publish %s/%s: %w after %d attempts", rec.Namespace, rec.Key, ErrConflict, maxCASAttempts)
}
