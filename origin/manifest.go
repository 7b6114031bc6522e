package origin

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/dataplane/dataplane/record"
)

// manifest lists the objects that together make up a namespace's snapshot
// when it is too big for one object or is kept as a base plus deltas. It is
// stored in the namespace's main snapshot object, where a small snapshot is
// stored whole (told apart by their magic: "DM" against "DS").
type manifest struct {
	Namespace string
	// Version is the version the whole snapshot covers.
	Version record.Version
	// Base are the chunks of the base snapshot in key order: each a
	// record.Snapshot encoding of a key range, ranges ascending and
	// disjoint.
	Base []part
	// Deltas are snapshots of the records changed since the base, oldest
	// first; a key in several holds its newest version in the last.
	Deltas []part
	// Retired are parts a previous manifest listed: kept one more
	// generation for readers that still follow the previous manifest, and
	// deleted when the next base is written.
	Retired []string
}

// part is one object of a snapshot.
type part struct {
	Name string
	Size int64 // encoded bytes
}

const (
	manifestMagic0, manifestMagic1 = 'D', 'M'
	manifestFormat                 = 1
	// maxManifestSize bounds a manifest read, so a corrupt object can never
	// make a reader allocate without limit.
	maxManifestSize = 16 << 20
	// maxPartNameLen bounds a part's name.
	maxPartNameLen = 64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// validPartName reports whether name can name a snapshot part in every
// store: 1-64 bytes of [a-z0-9-].
func validPartName(name string) bool {
	if name == "" || len(name) > maxPartNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// CheckPartName validates the name of a snapshot part, so every store that
// implements SnapshotParts rejects the same bad name the same way. The empty
// name, the main object, is valid.
func CheckPartName(ns, name string) error {
	if err := record.ValidateNamespace(ns); err != nil {
		return err
	}
	if name != "" && !validPartName(name) {
		return fmt.Errorf("%w: snapshot part name %.80q (use 1-%d bytes of a-z, 0-9, '-')", record.ErrInvalid, name, maxPartNameLen)
	}
	return nil
}

// marshalManifest encodes m:
//
//	"DM" 0x01 0x00 | version (8 bytes) | uvarint len + namespace |
//	uvarint n + n × (uvarint len + name | uvarint size)   (base) |
//	uvarint n + n × (uvarint len + name | uvarint size)   (deltas) |
//	uvarint n + n × (uvarint len + name)                  (retired) |
//	CRC-32C (4 bytes)
func marshalManifest(m manifest) []byte {
	b := []byte{manifestMagic0, manifestMagic1, manifestFormat, 0}
	b = binary.BigEndian.AppendUint64(b, uint64(m.Version))
	b = appendString(b, m.Namespace)
	for _, list := range [][]part{m.Base, m.Deltas} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, p := range list {
			b = appendString(b, p.Name)
			b = binary.AppendUvarint(b, uint64(p.Size))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(m.Retired)))
	for _, name := range m.Retired {
		b = appendString(b, name)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// unmarshalManifest decodes a manifest. Malformed input yields an error
// wrapping record.ErrCorrupt; it never panics.
func unmarshalManifest(b []byte) (manifest, error) {
	corrupt := func(format string, args ...any) (manifest, error) {
		return manifest{}, fmt.Errorf("%w: snapshot manifest: %s", record.ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) > maxManifestSize {
		return corrupt("%d bytes, limit is %d", len(b), maxManifestSize)
	}
	if len(b) < 12+4 {
		return corrupt("truncated at %d bytes", len(b))
	}
	if b[0] != manifestMagic0 || b[1] != manifestMagic1 || b[2] != manifestFormat || b[3] != 0 {
		return corrupt("bad magic %x", b[:4])
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return corrupt("checksum mismatch")
	}
	m := manifest{Version: record.Version(binary.BigEndian.Uint64(body[4:12]))}
	d := body[12:]
	bad := false
	uvarint := func() uint64 {
		n, k := binary.Uvarint(d)
		if k <= 0 {
			bad = true
			return 0
		}
		d = d[k:]
		return n
	}
	str := func(limit int) string {
		n := uvarint()
		if bad || n > uint64(limit) || n > uint64(len(d)) {
			bad = true
			return ""
		}
		s := string(d[:n])
		d = d[n:]
		return s
	}
	m.Namespace = str(record.MaxNamespaceLen)
	if bad || record.ValidateNamespace(m.Namespace) != nil {
		return corrupt("bad namespace")
	}
	seen := map[string]bool{}
	name := func() string {
		s := str(maxPartNameLen)
		if !bad && (!validPartName(s) || seen[s]) {
			bad = true
		}
		seen[s] = true
		return s
	}
	// Every entry takes at least 2 bytes, which bounds a plausible count.
	count := func() int {
		n := uvarint()
		if n > uint64(len(d)/2) {
			bad = true
		}
		return int(n)
	}
	for _, list := range []*[]part{&m.Base, &m.Deltas} {
		n := count()
		for i := 0; i < n && !bad; i++ {
			p := part{Name: name()}
			size := uvarint()
			if size > 1<<50 {
				bad = true
			}
			p.Size = int64(size)
			*list = append(*list, p)
		}
	}
	n := count()
	for i := 0; i < n && !bad; i++ {
		m.Retired = append(m.Retired, name())
	}
	if bad {
		return corrupt("malformed entry")
	}
	if len(d) != 0 {
		return corrupt("%d trailing bytes", len(d))
	}
	if len(m.Base) == 0 {
		return corrupt("no base chunk")
	}
	return m, nil
}
