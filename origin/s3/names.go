package s3

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/dataplane/dataplane/record"
)

// Object name parts; see the package documentation.
const (
	recDir      = "rec/"
	logDir      = "log/"
	horizonName = "log-horizon"
	snapDir     = "snap/"

	// segmentLen bounds one "/"-separated part of an escaped key.
	segmentLen = 200
	// segmentSep joins the segments of a long escaped key.
	segmentSep = "~/"

	// metaVersion is the user metadata key holding a record's version.
	metaVersion = "version"

	// maxNameLen is S3's limit on an object name, in UTF-8 bytes.
	maxNameLen = 1024
	// hashedHeadLen bounds the escaped head kept readable in a hashed key
	// (see keyPart); under segmentLen, so it never holds a "~/".
	hashedHeadLen = 64
	// hashedDigestLen is the length of a hashed key's digest: SHA-256 in
	// lower-case hex.
	hashedDigestLen = 2 * sha256.Size
)

// sealTextLen is the length of a record.Seal in unpadded base64url.
var sealTextLen = base64.RawURLEncoding.EncodedLen(record.SealLen)

const upperHex = "0123456789ABCDEF"

func keepByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// escapeKey returns the S3-safe, reversible form of a record key.
func escapeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key) * 2)
	n := 0 // bytes in the current segment
	for i := 0; i < len(key); i++ {
		c := key[i]
		w := 3
		if keepByte(c) {
			w = 1
		}
		if n+w > segmentLen {
			b.WriteString(segmentSep)
			n = 0
		}
		if w == 1 {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&15])
		}
		n += w
	}
	return b.String()
}

// unescapeKey reverses escapeKey. It accepts only the exact form escapeKey
// produces, so two object names never decode to one key.
func unescapeKey(s string) (string, bool) {
	joined := strings.ReplaceAll(s, segmentSep, "")
	b := make([]byte, 0, len(joined))
	for i := 0; i < len(joined); i++ {
		c := joined[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(joined) {
			return "", false
		}
		hi, lo := strings.IndexByte(upperHex, joined[i+1]), strings.IndexByte(upperHex, joined[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	key := string(b)
	if key == "" || escapeKey(key) != s {
		return "", false
	}
	return key, true
}

// keyPart is the last part of an object name whose other parts take
// fixed bytes: the escaped key when the whole name fits maxNameLen, else
// its hashed form, and whether it is hashed. The hashed form is the first
// (at most hashedHeadLen) bytes of the escaped key, cut before an escape,
// then "~" and the SHA-256 of the key in lower-case hex: at most 129
// bytes, and never an escaped key (a '~' there is always followed by
// '/'), so no two keys share a name. It is not reversible: a change
// object under a hashed name holds the key in its body.
func keyPart(fixed int, key string) (string, bool) {
	esc := escapeKey(key)
	if fixed+len(esc) <= maxNameLen {
		return esc, false
	}
	head := esc[:min(len(esc), hashedHeadLen)]
	if i := strings.LastIndexByte(head, '%'); i >= 0 && i > len(head)-3 {
		head = head[:i]
	}
	sum := sha256.Sum256([]byte(key))
	return head + "~" + hex.EncodeToString(sum[:]), true
}

// isHashedKey reports whether part is keyPart's hashed form.
func isHashedKey(part string) bool {
	i := strings.LastIndexByte(part, '~')
	if i < 0 || len(part)-i-1 != hashedDigestLen || strings.IndexByte(part[:i], '~') >= 0 {
		return false
	}
	for _, c := range []byte(part[i+1:]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *Store) recordName(ns, key string) string {
	part, _ := keyPart(len(s.prefix)+len(recDir)+len(ns)+1, key)
	return s.prefix + recDir + ns + "/" + part
}

// RecordObjectName returns the name of the object that holds ns/key, for
// tools and tests that touch the bucket directly.
func (s *Store) RecordObjectName(ns, key string) string { return s.recordName(ns, key) }

// logName is a change's log object name: log/<version>/<ns>/<kind>/<key>,
// kind "p" (put) or "t" (tombstone); a change signed by the publisher has
// kind "P" or "T" and its record.Seal, unpadded base64url (sealTextLen
// characters), before the key: log/<version>/<ns>/P/<seal>/<key>. The log is
// read by listing alone, so the seal lives in the name. The key is escaped
// (escapeKey) or, where the name would pass S3's 1024 bytes (a long prefix,
// namespace and key of escaped bytes: up to 1,006 bytes plus the prefix),
// hashed (keyPart); then the object's body holds the key and a reader GETs
// it. The choice is made for the longer pending name (pendingName), so a
// change's log and pending names always agree. It reports whether the key
// is hashed.
func (s *Store) logName(c record.Change) (string, bool) { return s.changeName(logDir, c) }

// changeName is logName under dir (logDir or pendingDir).
func (s *Store) changeName(dir string, c record.Change) (string, bool) {
	kind := "p"
	if c.Tombstone {
		kind = "t"
	}
	if c.Seal != nil {
		kind = strings.ToUpper(kind) + "/" + base64.RawURLEncoding.EncodeToString(record.AppendSeal(nil, c.Seal))
	}
	mid := c.Version.String() + "/" + c.Namespace + "/" + kind + "/"
	part, hashed := keyPart(len(s.prefix)+max(len(logDir), len(pendingDir))+len(mid), c.Key)
	return s.prefix + dir + mid + part, hashed
}

// checkNames refuses a change any of whose object names (record, log,
// pending note) would pass S3's limit. keyPart keeps every name under it
// for every valid namespace and key with any prefix Config accepts; this
// is checked before a record is written, so that no write can land a
// record whose log entry cannot be written.
func (s *Store) checkNames(c record.Change) error {
	rec := s.recordName(c.Namespace, c.Key)
	lg, _ := s.changeName(logDir, c)
	pn, _ := s.changeName(pendingDir, c)
	if n := max(len(rec), len(lg), len(pn)); n > maxNameLen {
		return fmt.Errorf("%w: %s/%.40q...: an object name of %d bytes, over S3's %d", record.ErrInvalid, c.Namespace, c.Key, n, maxNameLen)
	}
	return nil
}

// logVersion parses the version of a change log object name (without the
// store prefix): the 16 hex digits after "log/".
func logVersion(rel string) (record.Version, bool) {
	if len(rel) < len(logDir)+17 || rel[:len(logDir)] != logDir || rel[len(logDir)+16] != '/' {
		return 0, false
	}
	hex := rel[len(logDir) : len(logDir)+16]
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	return record.Version(v), err == nil
}

// parseLogName decodes a change log object name (without the store
// prefix). A hashed name (see keyPart) decodes with an empty Key and
// hashed true: the key is in the object's body (resolveKey).
func parseLogName(rel string) (c record.Change, hashed, ok bool) {
	v, ok := logVersion(rel)
	if !ok || v == 0 {
		return record.Change{}, false, false
	}
	rest := rel[len(logDir)+17:]
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok || record.ValidateNamespace(ns) != nil || len(rest) < 3 || rest[1] != '/' {
		return record.Change{}, false, false
	}
	c = record.Change{Namespace: ns, Version: v}
	switch rest[0] {
	case 'p', 'P':
	case 't', 'T':
		c.Tombstone = true
	default:
		return record.Change{}, false, false
	}
	if rest[0] == 'P' || rest[0] == 'T' {
		if len(rest) < 2+sealTextLen+2 || rest[2+sealTextLen] != '/' {
			return record.Change{}, false, false
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(rest[2 : 2+sealTextLen])
		if err != nil || len(raw) != record.SealLen {
			return record.Change{}, false, false
		}
		if c.Seal, err = record.ParseSeal(raw); err != nil {
			return record.Change{}, false, false
		}
		rest = rest[sealTextLen+1:]
	}
	if isHashedKey(rest[2:]) {
		return c, true, true
	}
	key, ok := unescapeKey(rest[2:])
	if !ok || record.ValidateKey(ns, key) != nil {
		return record.Change{}, false, false
	}
	c.Key = key
	return c, false, true
}

// logStartAfter is the ListObjectsV2 StartAfter that skips every change with
// a version at most after: all of those names start "log/<after>/", and '~'
// sorts after '/' but before the next hex digit string.
func (s *Store) logStartAfter(after record.Version) string {
	return s.prefix + logDir + after.String() + "~"
}

func (s *Store) snapshotName(ns string) string { return s.prefix + snapDir + ns }

func parseVersion(hex string) (record.Version, bool) {
	if len(hex) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(hex, 16, 64)
	return record.Version(v), err == nil
}
