// Package atomicfile replaces files so that a crash at any moment leaves
// either the old content or the new, never a torn file.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// TempPrefix starts the names of temporary files; listings skip them.
const TempPrefix = ".tmp-"

// Write replaces path with b: it writes a temporary file in the same
// directory, fsyncs it, renames it over path and fsyncs the directory. The
// new content survives a crash of the machine once Write returns.
func Write(path string, b []byte) error {
	if err := replace(path, b, true); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// WriteNoSync replaces path with b as Write does, but without an fsync: a
// reader never sees a torn file, and the content survives the writer's
// crash (the page cache holds it), not the machine's. For notes whose loss
// with the machine is acceptable, at a fraction of Write's cost.
func WriteNoSync(path string, b []byte) error { return replace(path, b, false) }

// replace writes b to a temporary file beside path, fsyncs it if sync, and
// renames it over path; on failure it removes the temporary file.
func replace(path string, b []byte, sync bool) error {
	dir := filepath.Dir(path)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, TempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
