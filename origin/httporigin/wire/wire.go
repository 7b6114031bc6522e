// Package wire is the HTTP origin's protocol, shared by its client (package
// origin/httporigin) and its servers (package cachenode, which documents the
// protocol, and a node's peer snapshot endpoint): paths, headers, the
// version ETag, error codes and the JSON form of change log entries. It
// lives below all of them, beside the client.
package wire

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// Content types of bodies.
const (
	// ContentTypeRecord is a record in its record.Marshal encoding.
	ContentTypeRecord = "application/vnd.dataplane.record"
	// ContentTypeSnapshot is a snapshot in its record.MarshalSnapshot
	// encoding.
	ContentTypeSnapshot = "application/vnd.dataplane.snapshot"
	// ContentTypeSnapshotPart is a namespace's checkpoint or snapshot
	// proof as the origin stores it (checkpoint.Checkpoint.Marshal,
	// checkpoint.SnapshotProof.Marshal), passed on byte for byte.
	ContentTypeSnapshotPart = "application/vnd.dataplane.snapshot-part"
	// ContentTypeJSON is every other body, errors included.
	ContentTypeJSON = "application/json"
)

// HeaderStale is set to "1" on a record answered from a value past its fresh
// window (or one the origin could not confirm).
const HeaderStale = "X-Dataplane-Stale"

// Size limits of bodies, so neither side reads without bound.
const (
	// MaxLogPage is the most changes one GET /v1/log answers; clients
	// asking for more page through the log.
	MaxLogPage = 1000
	// MaxChangeBody bounds the JSON body of POST /v1/log.
	MaxChangeBody = 4 << 10
	// MaxLogBody bounds the JSON body of a GET /v1/log answer: MaxLogPage
	// changes of the longest key, every byte escaped.
	MaxLogBody = MaxLogPage * (6*record.MaxKeyLen + record.MaxNamespaceLen + 96)
	// MaxErrorBody bounds how much of an error body a client reads.
	MaxErrorBody = 64 << 10
	// DefaultMaxSnapshotSize is the default bound on a snapshot body, either
	// way. Both sides make it configurable.
	DefaultMaxSnapshotSize = 256 << 20
)

// Paths.
const (
	RecordsPrefix = "/v1/records/"
	LogPath       = "/v1/log"
	TrimPath      = "/v1/log/trim"
	SnapshotsPath = "/v1/snapshots/"
)

// RecordPath is the path of ns/key. The key is escaped so that nothing in it
// can be normalised away or split: bytes in [A-Za-z0-9_-] stay, every other
// byte (including '/', '.', '%', '?' and '#') becomes %XX. A namespace is
// [a-z0-9_-] and goes in verbatim.
func RecordPath(ns, key string) string {
	return RecordsPrefix + ns + "/" + EscapeKey(key)
}

// SnapshotPath is the path of ns's snapshot.
func SnapshotPath(ns string) string { return SnapshotsPath + ns }

// SnapshotPartPath is the path of snapshot part name of ns (a name
// origin.CheckPartName accepts: a-z, 0-9 and '-', nothing to escape). Cache
// nodes serve only the parts signed checkpoints need: the latest
// checkpoint and the snapshot proofs (CheckpointPart).
func SnapshotPartPath(ns, name string) string { return SnapshotsPath + ns + "/" + name }

// Part names of the checkpoint package (checkpoint.LatestName and
// checkpoint.ProofName), restated here so the protocol does not depend on
// the package that signs them: "checkpoint", and "ckpt-" followed by a
// version in 16 hex digits.
const (
	// LatestPartName is the part of a namespace's latest checkpoint.
	LatestPartName  = "checkpoint"
	proofPartPrefix = "ckpt-"
)

// CheckpointPart reports whether name is a part a cache node serves: the
// latest checkpoint (proof false) or the snapshot proof at version v
// (proof true).
func CheckpointPart(name string) (v record.Version, proof bool, ok bool) {
	if name == LatestPartName {
		return 0, false, true
	}
	h, found := strings.CutPrefix(name, proofPartPrefix)
	if !found || len(h) != 16 || strings.ToLower(h) != h {
		return 0, false, false
	}
	v, err := ParseVersion(h)
	if err != nil {
		return 0, false, false
	}
	return v, true, true
}

// EscapeKey escapes every byte of key outside [A-Za-z0-9_-] as %XX.
func EscapeKey(key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key) * 3)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ETag is the entity tag of version v of a record: the version as 16 hex
// digits, quoted. Versions only grow per key, so an ETag names one state.
func ETag(v record.Version) string { return `"` + v.String() + `"` }

// ParseETag parses an ETag made by ETag; a weak prefix "W/" is ignored.
func ParseETag(s string) (record.Version, error) {
	t := strings.TrimPrefix(strings.TrimSpace(s), "W/")
	if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
		return 0, fmt.Errorf("%w: ETag %.40q is not a quoted version", record.ErrInvalid, s)
	}
	return ParseVersion(t[1 : len(t)-1])
}

// ParseVersion parses a version written in hex (Version.String's form;
// 1 to 16 digits).
func ParseVersion(s string) (record.Version, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, fmt.Errorf("%w: version %.40q: want 1 to 16 hex digits", record.ErrInvalid, s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: version %.40q: want 1 to 16 hex digits", record.ErrInvalid, s)
	}
	return record.Version(v), nil
}

// Code says which error an answer carries, so a client maps it back to the
// sentinel error without parsing messages.
type Code string

// Error codes and the statuses they travel with.
const (
	CodeInvalid      Code = "invalid"      // 400: bad key, version, parameter or body
	CodeUnauthorized Code = "unauthorized" // 401, 403: missing or wrong token (bearer.Require's answers carry no code)
	CodeNotFound     Code = "not_found"    // 404: never-written key or snapshot
	CodeNoRoute      Code = "no_route"     // 404, 405: no such endpoint
	CodeConflict     Code = "conflict"     // 409: compare-and-swap lost
	CodeTruncated    Code = "truncated"    // 410: change log trimmed past `after`
	CodeTooLarge     Code = "too_large"    // 413: body over its limit
	CodeCorrupt      Code = "corrupt"      // 502: the origin's object does not decode
	CodeUnavailable  Code = "unavailable"  // 503: the origin failed or timed out
)

// Error is the JSON body of every error answer.
type Error struct {
	// Error names what was wrong (the key, the limit, the parameter).
	Error string `json:"error"`
	// Code classifies it.
	Code Code `json:"code,omitempty"`
}

// Change is the JSON form of a record.Change: the version in hex, like
// everywhere else in the protocol.
type Change struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Version   string `json:"version"`
	Tombstone bool   `json:"tombstone,omitempty"`
	// Seal is the publisher's record.Seal (key id, value digest,
	// signature) in base64, passed through untouched; empty if unsigned.
	Seal []byte `json:"seal,omitempty"`
}

// FromChange converts c to its wire form.
func FromChange(c record.Change) Change {
	wc := Change{Namespace: c.Namespace, Key: c.Key, Version: c.Version.String(), Tombstone: c.Tombstone}
	if c.Seal != nil {
		wc.Seal = record.AppendSeal(nil, c.Seal)
	}
	return wc
}

// ToChange converts and validates a wire change.
func (c Change) ToChange() (record.Change, error) {
	v, err := ParseVersion(c.Version)
	if err != nil {
		return record.Change{}, err
	}
	rc := record.Change{Namespace: c.Namespace, Key: c.Key, Version: v, Tombstone: c.Tombstone}
	if len(c.Seal) > 0 {
		if len(c.Seal) != record.SealLen {
			return record.Change{}, fmt.Errorf("%w: change seal is %d bytes, want %d", record.ErrCorrupt, len(c.Seal), record.SealLen)
		}
		if rc.Seal, err = record.ParseSeal(c.Seal); err != nil {
			return record.Change{}, err
		}
	}
	if err := origin.CheckChange(rc); err != nil {
		return record.Change{}, err
	}
	return rc, nil
}

// LogPage is the JSON body of a GET /v1/log answer.
type LogPage struct {
	Changes []Change `json:"changes"`
}

// DecodeLogPage decodes and validates a GET /v1/log answer asked for at most
// limit changes after `after`: every change valid, newer than after, in
// version order. Anything else wraps record.ErrCorrupt.
func DecodeLogPage(b []byte, after record.Version, limit int) ([]record.Change, error) {
	var p LogPage
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: change log page: %v", record.ErrCorrupt, err)
	}
	if limit > 0 && len(p.Changes) > limit {
		return nil, fmt.Errorf("%w: change log page holds %d changes, asked for %d", record.ErrCorrupt, len(p.Changes), limit)
	}
	out := make([]record.Change, 0, len(p.Changes))
	for i, wc := range p.Changes {
		c, err := wc.ToChange()
		if err != nil {
			return nil, fmt.Errorf("%w: change log entry %d: %v", record.ErrCorrupt, i, err)
		}
		if c.Version <= after {
			return nil, fmt.Errorf("%w: change log entry %d has version %s, asked for changes after %s", record.ErrCorrupt, i, c.Version, after)
		}
		if i > 0 && c.Version < out[i-1].Version {
			return nil, fmt.Errorf("%w: change log entry %d out of version order", record.ErrCorrupt, i)
		}
		out = append(out, c)
	}
	return out, nil
}
