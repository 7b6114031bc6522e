package origin

import (
	"fmt"
	"sort"

	"github.com/dataplane/dataplane/record"
)

// CheckSwap validates the arguments of a CompareAndSwap, so every store
// rejects the same bad input with the same error before any I/O.
func CheckSwap(rec record.Record, prev record.Version) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	if rec.Version <= prev {
		return fmt.Errorf("%w: %s/%s: new version %s must be greater than previous %s", record.ErrInvalid, rec.Namespace, rec.Key, rec.Version, prev)
	}
	return nil
}

// CheckChange validates a change log entry.
func CheckChange(c record.Change) error {
	if err := record.ValidateKey(c.Namespace, c.Key); err != nil {
		return err
	}
	if c.Version == 0 {
		return fmt.Errorf("%w: %s/%s: change version must be non-zero", record.ErrInvalid, c.Namespace, c.Key)
	}
	return nil
}

// Truncated reports whether reading the log after `after` would miss changes
// trimmed below horizon: some version in (after, horizon) may be gone.
func Truncated(after, horizon record.Version) bool {
	return horizon > 0 && after+1 < horizon
}

// SortChanges orders changes as ReadLog returns them: by version, then
// namespace and key so that equal versions have a stable order.
func SortChanges(cs []record.Change) {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Key < b.Key
	})
}
