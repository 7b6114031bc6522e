package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/dataplane/dataplane/record"
)

// SnapshotParts is an optional capability of a Store: raw objects beside a
// namespace's records, from which the helpers below (WriteSnapshot,
// ReadSnapshot, AppendSnapshot) build snapshots of any size that grow by
// deltas. A store that has it implements PutSnapshot and GetSnapshot with
// WriteSnapshot and ReadSnapshot, so every reader gets one merged
// record.Snapshot whatever the layout; the publisher detects it and writes
// only the changed records on each pass.
//
// The object named "" is the namespace's main snapshot object; others are
// parts, named by CheckPartName's rule.
type SnapshotParts interface {
	// PutSnapshotPart stores b as object name of ns, replacing any.
	PutSnapshotPart(ctx context.Context, ns, name string, b []byte) error
	// GetSnapshotPart opens object name of ns; the caller closes it. A
	// missing object is ErrNotFound.
	GetSnapshotPart(ctx context.Context, ns, name string) (io.ReadCloser, error)
	// DeleteSnapshotPart removes object name of ns; a missing one is not
	// an error.
	DeleteSnapshotPart(ctx context.Context, ns, name string) error
}

// Layout says how a namespace's snapshot is cut into objects.
type Layout struct {
	// InlineSize is the largest snapshot written whole into the main
	// object (the layout every earlier reader understands); bigger ones
	// are a manifest plus base chunks and deltas.
	InlineSize int
	// ChunkSize bounds the encoded size of one base chunk (a single record
	// bigger than it gets a chunk of its own).
	ChunkSize int
	// DeltaRatio: AppendSnapshot writes a new base once the deltas would
	// total more than this fraction of the base's bytes.
	DeltaRatio float64
	// MaxDeltas: AppendSnapshot merges the deltas into one once there
	// would be more than this many, bounding a reader's object count.
	MaxDeltas int
}

// DefaultLayout keeps snapshots up to 1 MiB in one object, cuts bigger ones
// into 32 MiB chunks, and rewrites the base when the deltas reach a quarter
// of it or number more than 16. A write then costs amortized O(1/DeltaRatio)
// record rewrites instead of a rewrite of the whole namespace.
func DefaultLayout() Layout {
	return Layout{InlineSize: 1 << 20, ChunkSize: 32 << 20, DeltaRatio: 0.25, MaxDeltas: 16}
}

func (l Layout) orDefault() Layout {
	d := DefaultLayout()
	if l.InlineSize <= 0 {
		l.InlineSize = d.InlineSize
	}
	if l.ChunkSize <= 0 {
		l.ChunkSize = d.ChunkSize
	}
	if l.DeltaRatio <= 0 {
		l.DeltaRatio = d.DeltaRatio
	}
	if l.MaxDeltas <= 0 {
		l.MaxDeltas = d.MaxDeltas
	}
	return l
}

// snapReadAttempts bounds ReadSnapshot's restarts when the parts it follows
// are replaced under it.
const snapReadAttempts = 3

// encodedSize estimates the bytes a record adds to a snapshot encoding
// (exact up to varint lengths).
func encodedSize(r record.Record) int {
	return 2 + 12 + 3*3 + len(r.Namespace) + len(r.Key) + len(r.Value) + 4
}

// newGeneration names a new set of parts, unique across writers.
func newGeneration(v record.Version) string {
	return strconv.FormatUint(uint64(v), 16) + "-" + strconv.FormatUint(uint64(time.Now().UnixNano())&0xffffffff^uint64(rand.Uint32()), 36)
}

// WriteSnapshot stores s as the snapshot of s.Namespace in p: whole in the
// main object when it fits Layout.InlineSize, else as base chunks of at most
// Layout.ChunkSize and a manifest, so no single object grows with the
// namespace. Parts the previous snapshot used are deleted a generation
// later (readers that still follow it retry).
func WriteSnapshot(ctx context.Context, p SnapshotParts, s record.Snapshot, l Layout) error {
	l = l.orDefault()
	if err := record.ValidateNamespace(s.Namespace); err != nil {
		return err
	}
	old, err := readManifestOnly(ctx, p, s.Namespace)
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, record.ErrCorrupt) {
		return err
	}
	return writeBase(ctx, p, s, old, l)
}

// readManifestOnly returns the manifest in the main object of ns, or nil
// when that holds a whole snapshot (which it does not decode).
func readManifestOnly(ctx context.Context, p SnapshotParts, ns string) (*manifest, error) {
	rc, err := p.GetSnapshotPart(ctx, ns, "")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("snapshot %s: read: %w", ns, err)
	}
	if len(magic) < 2 || magic[0] != manifestMagic0 || magic[1] != manifestMagic1 {
		return nil, nil
	}
	return decodeManifest(br, ns)
}

// decodeManifest reads the manifest of ns from r.
func decodeManifest(r io.Reader, ns string) (*manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: read manifest: %w", ns, err)
	}
	m, err := unmarshalManifest(b)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", ns, err)
	}
	if m.Namespace != ns {
		return nil, fmt.Errorf("snapshot %s: %w: manifest of %q", ns, record.ErrCorrupt, m.Namespace)
	}
	return &m, nil
}

// writeBase writes s as a new base, replacing old (nil: none, or not a
// manifest).
func writeBase(ctx context.Context, p SnapshotParts, s record.Snapshot, old *manifest, l Layout) error {
	recs := s.Records
	if !sort.SliceIsSorted(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key }) {
		recs = append([]record.Record(nil), recs...)
		sort.Slice(recs, func(i, j int) bool { return recs[i].Key < recs[j].Key })
	}
	total := 0
	for _, r := range recs {
		total += encodedSize(r)
	}
	if total+len(s.Namespace)+64 <= l.InlineSize {
		b, err := record.MarshalSnapshot(s)
		if err != nil {
			return err
		}
		if len(b) <= l.InlineSize {
			if err := p.PutSnapshotPart(ctx, s.Namespace, "", b); err != nil {
				return err
			}
			if old != nil {
				// Nothing refers to the old parts any more.
				deleteParts(ctx, p, s.Namespace, allParts(*old))
			}
			return nil
		}
	}
	gen := newGeneration(s.Version)
	m := manifest{Namespace: s.Namespace, Version: s.Version}
	put := func(chunk record.Snapshot) error {
		b, err := record.MarshalSnapshot(chunk)
		if err != nil {
			return err
		}
		name := gen + "-" + strconv.Itoa(len(m.Base))
		if err := p.PutSnapshotPart(ctx, s.Namespace, name, b); err != nil {
			return err
		}
		m.Base = append(m.Base, part{Name: name, Size: int64(len(b))})
		return nil
	}
	// Known versions, if any, go with the first chunk.
	chunk := record.Snapshot{Namespace: s.Namespace, Version: s.Version, Known: s.Known}
	size := 0
	for _, r := range recs {
		if n := encodedSize(r); size > 0 && size+n > l.ChunkSize {
			if err := put(chunk); err != nil {
				return err
			}
			chunk = record.Snapshot{Namespace: s.Namespace, Version: s.Version}
			size = 0
		}
		chunk.Records = append(chunk.Records, r)
		size += encodedSize(r)
	}
	if err := put(chunk); err != nil {
		return err
	}
	if old != nil {
		m.Retired = allParts(manifest{Base: old.Base, Deltas: old.Deltas})
	}
	if err := p.PutSnapshotPart(ctx, s.Namespace, "", marshalManifest(m)); err != nil {
		return err
	}
	if old != nil {
		deleteParts(ctx, p, s.Namespace, old.Retired)
	}
	return nil
}

func allParts(m manifest) []string {
	var out []string
	for _, list := range [][]part{m.Base, m.Deltas} {
		for _, p := range list {
			out = append(out, p.Name)
		}
	}
	return append(out, m.Retired...)
}

// deleteParts removes parts nobody refers to; a failure costs storage only.
func deleteParts(ctx context.Context, p SnapshotParts, ns string, names []string) {
	for _, name := range names {
		_ = p.DeleteSnapshotPart(ctx, ns, name)
	}
}

// readMain reads the main object of ns: a manifest (m non-nil) or a whole
// snapshot (whole non-nil).
func readMain(ctx context.Context, p SnapshotParts, ns string) (m *manifest, whole *record.Snapshot, err error) {
	rc, err := p.GetSnapshotPart(ctx, ns, "")
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("snapshot %s: read: %w", ns, err)
	}
	if len(magic) == 2 && magic[0] == manifestMagic0 && magic[1] == manifestMagic1 {
		m, err := decodeManifest(br, ns)
		return m, nil, err
	}
	s, err := record.ReadSnapshot(br)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot %s: %w", ns, err)
	}
	if s.Namespace != ns {
		return nil, nil, fmt.Errorf("snapshot %s: %w: object holds the snapshot of %q", ns, record.ErrCorrupt, s.Namespace)
	}
	return nil, &s, nil
}

// errPartGone marks a part a manifest names that is not there: replaced
// under the reader, who reads the manifest again. It wraps ErrNotFound.
var errPartGone = fmt.Errorf("snapshot part replaced: %w", ErrNotFound)

// openPart opens part name of ns, marking a missing one with errPartGone.
func openPart(ctx context.Context, p SnapshotParts, ns, name string) (io.ReadCloser, error) {
	rc, err := p.GetSnapshotPart(ctx, ns, name)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", errPartGone, err)
	}
	return rc, err
}

// readPart decodes one part of ns.
func readPart(ctx context.Context, p SnapshotParts, ns, name string) (record.Snapshot, error) {
	rc, err := openPart(ctx, p, ns, name)
	if err != nil {
		return record.Snapshot{}, err
	}
	defer rc.Close()
	s, err := record.ReadSnapshot(rc)
	if err != nil {
		return record.Snapshot{}, fmt.Errorf("snapshot %s part %s: %w", ns, name, err)
	}
	if s.Namespace != ns {
		return record.Snapshot{}, fmt.Errorf("snapshot %s part %s: %w: holds the snapshot of %q", ns, name, record.ErrCorrupt, s.Namespace)
	}
	return s, nil
}

// ReadSnapshot returns the snapshot of ns stored in p by WriteSnapshot or
// AppendSnapshot, merged into one: every key once, in its newest version
// across base and deltas, Version the version the whole covers. It drains
// OpenSnapshot's stream, so the encoding is never held whole, and opens the
// snapshot again when its parts are replaced under it. A missing snapshot is
// ErrNotFound.
func ReadSnapshot(ctx context.Context, p SnapshotParts, ns string) (record.Snapshot, error) {
	var err error
	for attempt := 0; attempt < snapReadAttempts; attempt++ {
		var st *SnapshotStream
		st, err = OpenSnapshot(ctx, p, ns)
		if err == nil {
			var s record.Snapshot
			s, err = st.ReadAll()
			if err == nil {
				return s, nil
			}
		}
		if !errors.Is(err, errPartGone) {
			return record.Snapshot{}, err
		}
		// Replaced under us: follow the new manifest.
	}
	return record.Snapshot{}, fmt.Errorf("snapshot %s: %w: parts missing after %d attempts: %w", ns, record.ErrCorrupt, snapReadAttempts, err)
}

// mergeRecords merges the records of deltas into base (sorted by key),
// keeping each key's newest version, and returns the result sorted by key.
// It reuses base's array when no delta adds a key.
func mergeRecords(base []record.Record, deltas ...record.Snapshot) []record.Record {
	newest := map[string]record.Record{}
	for _, d := range deltas {
		for _, r := range d.Records {
			if cur, ok := newest[r.Key]; !ok || r.Version > cur.Version {
				newest[r.Key] = r
			}
		}
	}
	if len(newest) == 0 {
		return base
	}
	var added []record.Record
	for key, r := range newest {
		i := sort.Search(len(base), func(i int) bool { return base[i].Key >= key })
		if i < len(base) && base[i].Key == key {
			if r.Version > base[i].Version {
				base[i] = r
			}
			continue
		}
		added = append(added, r)
	}
	if len(added) == 0 {
		return base
	}
	sort.Slice(added, func(i, j int) bool { return added[i].Key < added[j].Key })
	out := make([]record.Record, 0, len(base)+len(added))
	i, j := 0, 0
	for i < len(base) || j < len(added) {
		if j == len(added) || i < len(base) && base[i].Key < added[j].Key {
			out = append(out, base[i])
			i++
		} else {
			out = append(out, added[j])
			j++
		}
	}
	return out
}

// DropTombstones removes tombstones with versions below before from recs,
// in place (before 0 keeps them all): how snapshots forget deletes past the
// publisher's tombstone horizon.
func DropTombstones(recs []record.Record, before record.Version) []record.Record {
	if before == 0 {
		return recs
	}
	out := recs[:0]
	for _, r := range recs {
		if !(r.Tombstone && r.Version < before) {
			out = append(out, r)
		}
	}
	return out
}

// SnapshotVersion returns the version the stored snapshot of ns covers,
// reading only its main object (a manifest, or a whole snapshot of at most
// Layout.InlineSize for snapshots this package wrote). A missing snapshot
// is ErrNotFound.
func SnapshotVersion(ctx context.Context, p SnapshotParts, ns string) (record.Version, error) {
	m, whole, err := readMain(ctx, p, ns)
	switch {
	case err != nil:
		return 0, err
	case m != nil:
		return m.Version, nil
	default:
		return whole.Version, nil
	}
}

// AppendSnapshot adds delta, the current records of the keys changed since
// the stored snapshot of delta.Namespace, and moves that snapshot to
// delta.Version (never backwards). It writes only delta's records (one new
// part and the manifest) until the deltas outgrow Layout.DeltaRatio of the
// base or number more than Layout.MaxDeltas; then it merges them (into one
// delta, or with the base into a new base). Whenever the base is rewritten,
// tombstones with versions below dropBefore (0: none) are left out.
func AppendSnapshot(ctx context.Context, p SnapshotParts, delta record.Snapshot, dropBefore record.Version, l Layout) error {
	l = l.orDefault()
	ns := delta.Namespace
	if err := record.ValidateNamespace(ns); err != nil {
		return err
	}
	m, whole, err := readMain(ctx, p, ns)
	switch {
	case errors.Is(err, ErrNotFound):
		delta.Records = DropTombstones(append([]record.Record(nil), delta.Records...), dropBefore)
		return writeBase(ctx, p, delta, nil, l)
	case err != nil:
		return err
	case whole != nil:
		whole.Records = DropTombstones(mergeRecords(whole.Records, delta), dropBefore)
		whole.Version = max(whole.Version, delta.Version)
		return writeBase(ctx, p, *whole, nil, l)
	}
	var deltaBytes, baseBytes int64
	for _, bp := range m.Base {
		baseBytes += bp.Size
	}
	for _, dp := range m.Deltas {
		deltaBytes += dp.Size
	}
	b, err := record.MarshalSnapshot(record.Snapshot{Namespace: ns, Version: delta.Version, Records: delta.Records})
	if err != nil {
		return err
	}
	deltaBytes += int64(len(b))
	version := max(m.Version, delta.Version)
	if float64(deltaBytes) > l.DeltaRatio*float64(baseBytes) {
		st, err := openManifest(ctx, p, m)
		var full record.Snapshot
		if err == nil {
			full, err = st.ReadAll()
		}
		if err != nil {
			return fmt.Errorf("snapshot %s: read for a new base: %w", ns, err)
		}
		full.Records = DropTombstones(mergeRecords(full.Records, delta), dropBefore)
		full.Version = version
		return writeBase(ctx, p, full, m, l)
	}
	next := *m
	next.Version = version
	next.Deltas = append([]part(nil), m.Deltas...)
	if len(delta.Records) == 0 {
		// Nothing changed in ns: only the version moves.
		if version == m.Version {
			return nil
		}
		return p.PutSnapshotPart(ctx, ns, "", marshalManifest(next))
	}
	merged := false
	if len(next.Deltas)+1 > l.MaxDeltas {
		var parts []record.Snapshot
		for _, dp := range m.Deltas {
			s, err := readPart(ctx, p, ns, dp.Name)
			if err != nil {
				return fmt.Errorf("snapshot %s: merge deltas: %w", ns, err)
			}
			parts = append(parts, s)
		}
		recs := mergeRecords(nil, append(parts, delta)...)
		if b, err = record.MarshalSnapshot(record.Snapshot{Namespace: ns, Version: version, Records: recs}); err != nil {
			return err
		}
		merged = true
		next.Retired = nil
		for _, dp := range m.Deltas {
			next.Retired = append(next.Retired, dp.Name)
		}
		next.Deltas = nil
	}
	name := newGeneration(version) + "-d"
	if err := p.PutSnapshotPart(ctx, ns, name, b); err != nil {
		return err
	}
	next.Deltas = append(next.Deltas, part{Name: name, Size: int64(len(b))})
	if err := p.PutSnapshotPart(ctx, ns, "", marshalManifest(next)); err != nil {
		return err
	}
	if merged {
		// The deltas merged: the parts retired before are two
		// generations old now.
		deleteParts(ctx, p, ns, m.Retired)
	}
	return nil
}
