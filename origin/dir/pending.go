package dir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dataplane/dataplane/internal/atomicfile"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

var _ origin.Pending = (*Store)(nil)

// pendingPath is the file noting change c in flight: pending/ holds files
// named like change log entries, with the same encoding.
func (s *Store) pendingPath(c record.Change) string {
	return filepath.Join(s.root, "pending", logName(c))
}

// PutPending implements origin.Pending.
func (s *Store) PutPending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := record.Marshal(record.Record{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.root, "pending"), 0o755); err != nil {
		return fmt.Errorf("put pending: %w: %w", origin.ErrUnavailable, err)
	}
	// Temporary file and rename, without fsync: a note must survive the
	// publisher's crash, which the page cache ensures; fsyncing it would
	// double the cost of every publish for the rarer machine crash.
	if err := atomicfile.WriteNoSync(s.pendingPath(c), b); err != nil {
		return fmt.Errorf("put pending: %w: %w", origin.ErrUnavailable, err)
	}
	return nil
}

// DeletePending implements origin.Pending.
func (s *Store) DeletePending(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(s.pendingPath(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete pending: %w: %w", origin.ErrUnavailable, err)
	}
	return nil
}

// ListPending implements origin.Pending.
func (s *Store) ListPending(ctx context.Context, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "pending"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pending: %w: %w", origin.ErrUnavailable, err)
	}
	var out []record.Change
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, atomicfile.TempPrefix) {
			continue
		}
		c, ok, err := readChange(filepath.Join(s.root, "pending", name))
		if err != nil {
			return nil, fmt.Errorf("list pending: %w", err)
		}
		if !ok {
			continue // cleared under us
		}
		out = append(out, c)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}
