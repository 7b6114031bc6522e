// Package origin defines where records live durably (the "origin": a local
// directory, S3, DynamoDB, or a cache tier in front of one of them) and the
// contract every such store keeps. Stores live in subpackages; the shared
// conformance suite in origin/origintest checks each against a real server.
package origin

import (
	"context"
	"errors"

	"github.com/dataplane/dataplane/record"
)

// Sentinel errors every Store returns (wrapped, with details) so callers can
// branch with errors.Is whatever the backend.
var (
	// ErrNotFound means the key (or snapshot) has never been written.
	ErrNotFound = errors.New("not found")
	// ErrNotModified answers a Get whose ifNewer version is already the
	// stored version or newer.
	ErrNotModified = errors.New("not modified")
	// ErrConflict means a compare-and-swap found another version stored.
	ErrConflict = errors.New("version conflict")
	// ErrLogTruncated means the change log no longer holds every change after
	// the requested version: the reader must revalidate what it holds.
	ErrLogTruncated = errors.New("change log truncated")
	// ErrUnavailable means the store could not be reached or answered with a
	// server error after retries.
	ErrUnavailable = errors.New("origin unavailable")
)

// Store is the durable home of records. Implementations are safe for
// concurrent use by many goroutines and, for the real backends, by many
// processes: CompareAndSwap is atomic against every other writer.
//
// A corrupt stored object yields an error wrapping record.ErrCorrupt for that
// key alone; other keys are unaffected.
type Store interface {
	// Get returns the stored record of ns/key (possibly a tombstone). When
	// ifNewer is non-zero and the stored version is not greater than it, Get
	// returns ErrNotModified, as cheaply as the backend allows (a 304, no
	// body). A never-written key is ErrNotFound.
	Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error)

	// CompareAndSwap stores rec if the key's current version is prev (0:
	// the key must not exist) and returns ErrConflict otherwise. rec.Version
	// must be greater than prev. It writes the record only; callers append
	// the change to the log afterwards (see Publish).
	CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error

	// AppendLog adds a change to the change log. Appending the same change
	// twice is harmless.
	AppendLog(ctx context.Context, c record.Change) error

	// ReadLog returns up to limit changes with versions greater than after,
	// in ascending version order. If changes after `after` were trimmed it
	// returns ErrLogTruncated.
	ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error)

	// TrimLog forgets changes with versions below before; later ReadLog
	// calls for an older `after` return ErrLogTruncated.
	TrimLog(ctx context.Context, before record.Version) error

	// PutSnapshot replaces the snapshot of s.Namespace.
	PutSnapshot(ctx context.Context, s record.Snapshot) error

	// GetSnapshot returns the latest snapshot of ns, or ErrNotFound.
	GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error)
}
