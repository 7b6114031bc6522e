// Package dir is an origin.Store in a local directory: the embedded default
// for `dataplane dev`, single-host deployments and tests.
//
// Layout under the root directory:
//
//	rec/<ns>/<sha256(key) hex>   one record, record.Marshal encoding
//	log/<version hex16>-<id>     one change log entry (a record without value)
//	log-horizon                  version below which the log was trimmed
//	snap/<ns>                    the namespace's snapshot, or its manifest
//	snap/<ns>.parts/<name>       the chunks and deltas a manifest lists
//	locks/<00..ff>               lock files striping compare-and-swap
//
// Every file is written to a temporary file, fsynced, renamed over its target
// and the directory fsynced, so a crash mid-write leaves either the old or the
// new file, never a torn one. CompareAndSwap holds an exclusive flock(2) on
// the key's lock stripe while it reads, compares and renames, which makes it
// atomic against other goroutines and other processes sharing the directory.
package dir

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/dataplane/dataplane/internal/atomicfile"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Store is an origin.Store in a directory. It is safe for concurrent use by
// goroutines and processes.
type Store struct {
	partSnapshots
	root string
}

var (
	_ origin.Store          = (*Store)(nil)
	_ origin.SnapshotParts  = (*Store)(nil)
	_ origin.SnapshotOpener = (*Store)(nil)
)

// Open returns a Store rooted at root, creating the directory if needed.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("dir origin: empty directory path")
	}
	for _, sub := range []string{"rec", "log", "snap", "locks"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return nil, fmt.Errorf("dir origin %s: %w", root, err)
		}
	}
	s := &Store{root: root}
	s.partSnapshots = partSnapshots{Parts: s}
	return s, nil
}

// Root returns the directory the store lives in.
func (s *Store) Root() string { return s.root }

func keyHash(ns, key string) [32]byte {
	return sha256.Sum256([]byte(ns + "\x00" + key))
}

// RecordPath returns the file holding ns/key's record. Tests use it to
// damage a record behind the store's back.
func (s *Store) RecordPath(ns, key string) string {
	h := keyHash(ns, key)
	return filepath.Join(s.root, "rec", ns, hex.EncodeToString(h[:]))
}

// Get implements origin.Store.
func (s *Store) Get(ctx context.Context, ns, key string, ifNewer record.Version) (record.Record, error) {
	if err := record.ValidateKey(ns, key); err != nil {
		return record.Record{}, err
	}
	if err := ctx.Err(); err != nil {
		return record.Record{}, fmt.Errorf("get %s/%s: %w", ns, key, err)
	}
	r, err := s.read(ns, key)
	if err != nil {
		return record.Record{}, err
	}
	if ifNewer != 0 && r.Version <= ifNewer {
		return record.Record{}, origin.ErrNotModified
	}
	return r, nil
}

func (s *Store) read(ns, key string) (record.Record, error) {
	b, err := os.ReadFile(s.RecordPath(ns, key))
	if errors.Is(err, fs.ErrNotExist) {
		return record.Record{}, fmt.Errorf("%s/%s: %w", ns, key, origin.ErrNotFound)
	}
	if err != nil {
		return record.Record{}, fmt.Errorf("%s/%s: %w: %w", ns, key, origin.ErrUnavailable, err)
	}
	r, err := record.Unmarshal(b)
	if err != nil {
		return record.Record{}, fmt.Errorf("%s/%s: %w", ns, key, err)
	}
	if r.Namespace != ns || r.Key != key {
		return record.Record{}, fmt.Errorf("%s/%s: %w: file holds %s/%s", ns, key, record.ErrCorrupt, r.Namespace, r.Key)
	}
	return r, nil
}

// CompareAndSwap implements origin.Store.
func (s *Store) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if err := origin.CheckSwap(rec, prev); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s/%s: %w", rec.Namespace, rec.Key, err)
	}
	b, err := record.Marshal(rec)
	if err != nil {
		return err
	}
	h := keyHash(rec.Namespace, rec.Key)
	unlock, err := s.lock(h[0])
	if err != nil {
		return err
	}
	defer unlock()

	var cur record.Version
	switch r, err := s.read(rec.Namespace, rec.Key); {
	case err == nil:
		cur = r.Version
	case errors.Is(err, origin.ErrNotFound):
	default:
		return fmt.Errorf("put %s/%s: read current: %w", rec.Namespace, rec.Key, err)
	}
	if cur != prev {
		return fmt.Errorf("%s/%s: stored %s, expected %s: %w", rec.Namespace, rec.Key, cur, prev, origin.ErrConflict)
	}
	dir := filepath.Join(s.root, "rec", rec.Namespace)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %s/%s: %w", rec.Namespace, rec.Key, err)
	}
	return atomicfile.Write(s.RecordPath(rec.Namespace, rec.Key), b)
}

// lock takes the exclusive flock of a stripe and returns its release.
func (s *Store) lock(stripe byte) (func(), error) {
	p := filepath.Join(s.root, "locks", fmt.Sprintf("%02x", stripe))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dir origin lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("dir origin lock %s: %w", p, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// logName is the file name of a change: fixed-width hex version first, so
// names sort by version, then a hash of the rest so distinct changes with
// one version do not collide and the same change always has the same name.
func logName(c record.Change) string {
	h := keyHash(c.Namespace, c.Key)
	if c.Tombstone {
		h[0] ^= 1
	}
	return c.Version.String() + "-" + hex.EncodeToString(h[:8])
}

// AppendLog implements origin.Store.
func (s *Store) AppendLog(ctx context.Context, c record.Change) error {
	if err := origin.CheckChange(c); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The entry is the change as a record without a value, with the
	// change's Seal (format 2) when the publisher signed it.
	b, err := record.Marshal(record.Record{Namespace: c.Namespace, Key: c.Key, Version: c.Version, Tombstone: c.Tombstone, Seal: c.Seal})
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.root, "log", logName(c)), b)
}

// ReadLog implements origin.Store.
func (s *Store) ReadLog(ctx context.Context, after record.Version, limit int) ([]record.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	horizon, err := s.horizon()
	if err != nil {
		return nil, err
	}
	if origin.Truncated(after, horizon) {
		return nil, fmt.Errorf("read log after %s, horizon %s: %w", after, horizon, origin.ErrLogTruncated)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "log"))
	if err != nil {
		return nil, fmt.Errorf("read log: %w: %w", origin.ErrUnavailable, err)
	}
	var out []record.Change
	for _, e := range entries { // ReadDir sorts by name, and names sort by version
		name := e.Name()
		if strings.HasPrefix(name, atomicfile.TempPrefix) || len(name) < 16 {
			continue
		}
		v, err := strconv.ParseUint(name[:16], 16, 64)
		if err != nil || record.Version(v) <= after {
			continue
		}
		c, ok, err := readChange(filepath.Join(s.root, "log", name))
		if err != nil {
			return nil, fmt.Errorf("read log: %w", err)
		}
		if !ok {
			continue // trimmed under us
		}
		out = append(out, c)
	}
	origin.SortChanges(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// readChange reads the change in the file at path, a change log entry or a
// pending note (a record without a value); ok is false when the file is
// gone, trimmed or cleared since it was listed.
func readChange(path string) (c record.Change, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return record.Change{}, false, nil
	}
	if err != nil {
		return record.Change{}, false, err
	}
	r, err := record.Unmarshal(b)
	if err != nil {
		return record.Change{}, false, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return r.Change(), true, nil
}

func (s *Store) horizon() (record.Version, error) {
	b, err := os.ReadFile(filepath.Join(s.root, "log-horizon"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read log horizon: %w", err)
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("log horizon: %w: %d bytes", record.ErrCorrupt, len(b))
	}
	return record.Version(binary.BigEndian.Uint64(b)), nil
}

// TrimLog implements origin.Store.
func (s *Store) TrimLog(ctx context.Context, before record.Version) error {
	unlock, err := s.lock(0xff)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := s.horizon()
	if err != nil {
		return err
	}
	if before > cur {
		// Horizon first: a reader never sees a gap without being told.
		if err := atomicfile.Write(filepath.Join(s.root, "log-horizon"), binary.BigEndian.AppendUint64(nil, uint64(before))); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "log"))
	if err != nil {
		return fmt.Errorf("trim log: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if len(name) < 16 || strings.HasPrefix(name, atomicfile.TempPrefix) {
			continue
		}
		if v, err := strconv.ParseUint(name[:16], 16, 64); err == nil && record.Version(v) < before {
			if err := os.Remove(filepath.Join(s.root, "log", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("trim log: %w", err)
			}
		}
	}
	return nil
}

// partSnapshots gives Store its PutSnapshot, GetSnapshot and OpenSnapshot
// over its snapshot parts (origin.PartSnapshots).
type partSnapshots = origin.PartSnapshots

// partPath is where part name of ns lives: the main object at snap/<ns>,
// the others under snap/<ns>.parts/ ('.' never occurs in a namespace).
func (s *Store) partPath(ns, name string) string {
	if name == "" {
		return filepath.Join(s.root, "snap", ns)
	}
	return filepath.Join(s.root, "snap", ns+".parts", name)
}

// PutSnapshotPart implements origin.SnapshotParts.
func (s *Store) PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := s.partPath(ns, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("snapshot %s: %w: %w", ns, origin.ErrUnavailable, err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("snapshot %s: %w: %w", ns, origin.ErrUnavailable, err)
	}
	return nil
}

// GetSnapshotPart implements origin.SnapshotParts.
func (s *Store) GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error) {
	if err := origin.CheckPartName(ns, name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.partPath(ns, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("snapshot %s part %q: %w", ns, name, origin.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w: %w", ns, origin.ErrUnavailable, err)
	}
	return f, nil
}

// DeleteSnapshotPart implements origin.SnapshotParts.
func (s *Store) DeleteSnapshotPart(ctx context.Context, ns, name string) error {
	if err := origin.CheckPartName(ns, name); err != nil {
		return err
	}
	if err := os.Remove(s.partPath(ns, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("snapshot %s: %w: %w", ns, origin.ErrUnavailable, err)
	}
	return nil
}
