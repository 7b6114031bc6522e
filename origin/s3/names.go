package s3

import (
	"encoding/base64"
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

func (s *Store) recordName(ns, key string) string {
	return s.prefix + recDir + ns + "/" + escapeKey(key)
}

// RecordObjectName returns the name of the object that holds ns/key, for
// tools and tests that touch the bucket directly.
func (s *Store) RecordObjectName(ns, key string) string { return s.recordName(ns, key) }

// logName is a change's log object name: log/<version>/<ns>/<kind>/<key>,
// kind "p" (put) or "t" (tombstone); a change signed by the publisher has
// kind "P" or "T" and its record.Seal, unpadded base64url (sealTextLen
// characters), before the key: log/<version>/<ns>/P/<seal>/<key>. The log is
// read by listing alone, so the seal lives in the name. (Worst case, a
// 256-byte key of escaped bytes, the name is about 1005 bytes plus the
// store prefix, under S3's 1024.)
func (s *Store) logName(c record.Change) string {
	kind := "p"
	if c.Tombstone {
		kind = "t"
	}
	if c.Seal != nil {
		kind = strings.ToUpper(kind) + "/" + base64.RawURLEncoding.EncodeToString(record.AppendSeal(nil, c.Seal))
	}
	return s.prefix + logDir + c.Version.String() + "/" + c.Namespace + "/" + kind + "/" + escapeKey(c.Key)
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

// parseLogName decodes a change log object name (without the store prefix).
func parseLogName(rel string) (record.Change, bool) {
	v, ok := logVersion(rel)
	if !ok || v == 0 {
		return record.Change{}, false
	}
	rest := rel[len(logDir)+17:]
	ns, rest, ok := strings.Cut(rest, "/")
	if !ok || record.ValidateNamespace(ns) != nil || len(rest) < 3 || rest[1] != '/' {
		return record.Change{}, false
	}
	c := record.Change{Namespace: ns, Version: v}
	switch rest[0] {
	case 'p', 'P':
	case 't', 'T':
		c.Tombstone = true
	default:
		return record.Change{}, false
	}
	if rest[0] == 'P' || rest[0] == 'T' {
		if len(rest) < 2+sealTextLen+2 || rest[2+sealTextLen] != '/' {
			return record.Change{}, false
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(rest[2 : 2+sealTextLen])
		if err != nil || len(raw) != record.SealLen {
			return record.Change{}, false
		}
		if c.Seal, err = record.ParseSeal(raw); err != nil {
			return record.Change{}, false
		}
		rest = rest[sealTextLen+1:]
	}
	key, ok := unescapeKey(rest[2:])
	if !ok || record.ValidateKey(ns, key) != nil {
		return record.Change{}, false
	}
	c.Key = key
	return c, true
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
