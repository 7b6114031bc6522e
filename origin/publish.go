package origin

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dataplane/dataplane/record"
)

// ErrStale means Publish was given a version older than the one stored: a
// newer write already happened, and this one must not overwrite it.
var ErrStale = errors.New("older than stored version")

// ErrVersionTaken means Publish was given a version the key already holds
// with other content (another value, or a delete against a value): another
// publisher, whose clock handed out the same version, wrote first. It wraps
// ErrStale, since the stored write is not older than this one and this one
// must not replace it; a publisher retries under a fresh version above it.
var ErrVersionTaken = fmt.Errorf("version already stored with other content: %w", ErrStale)

// maxCASAttempts bounds Publish's retries when other writers keep winning.
const maxCASAttempts = 8

// Publish makes rec the state of its key if rec.Version is newer than the
// stored version, then appends the change to the log. It is idempotent:
// publishing a record that is already stored (same version, same value and
// tombstone flag) only re-appends the log entry (repairing a crash between
// the two writes) and reports written=false. A stored newer version yields
// ErrStale; the same version stored with other content, ErrVersionTaken.
//
// Versions are unique per key across publishers because of that last rule,
// not because of the clocks: two publishers whose hybrid logical clocks
// hand out the same version (clocks skewed, or one observed the other's
// version) both read the same previous version, only one compare-and-swap
// wins (every store's CAS is atomic on the previous version and requires a
// greater new one), and the loser, on its retry, finds its own version
// stored. Taking that for its own write, as an idempotent republish, would
// acknowledge, log and gossip a value the origin never held under that
// version; comparing the content refuses it. Folding a publisher id into
// the logical bits would also make versions unique, but it needs an id
// assigned uniquely to every publisher process (a duplicated id brings the
// collision back silently), takes bits from the logical counter, and does
// not cover versions a caller brings (publisher.PutVersion, the outbox
// sync).
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
		if prev == rec.Version && !sameContent(cur, rec) {
			return false, fmt.Errorf("publish %s/%s@%s: %w", rec.Namespace, rec.Key, rec.Version, ErrVersionTaken)
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

// sameContent reports whether a and b are the same state of a key: the same
// tombstone flag and the same value. Seals are not compared: two publishers
// may sign one state with different keys.
func sameContent(a, b record.Record) bool {
	return a.Tombstone == b.Tombstone && bytes.Equal(a.Value, b.Value)
}
