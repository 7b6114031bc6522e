package httporigin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// The decoders below turn a node's answer into what the Store returns. They
// see bytes from the network: they never panic, bound what they allocate by
// the body they are given, and return either a valid result or an error
// wrapping a sentinel (see FuzzDecodeResponse).

// decodeGet decodes the answer to GET /v1/records/{ns}/{key} sent with
// If-None-Match: ifNewer (none if 0).
func decodeGet(ns, key string, ifNewer record.Version, status int, etag string, body []byte) (record.Record, error) {
	switch status {
	case http.StatusOK:
		rec, err := record.Unmarshal(body)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				err = fmt.Errorf("%w: %v", record.ErrCorrupt, err)
			}
			return record.Record{}, fmt.Errorf("%s/%s: answer body: %w", ns, key, err)
		}
		if rec.Namespace != ns || rec.Key != key {
			return record.Record{}, fmt.Errorf("%s/%s: %w: the node answered with the record of %s/%s", ns, key, record.ErrCorrupt, rec.Namespace, rec.Key)
		}
		if etag != "" {
			if v, err := wire.ParseETag(etag); err != nil || v != rec.Version {
				return record.Record{}, fmt.Errorf("%s/%s: %w: ETag %.40q does not match version %s of the body", ns, key, record.ErrCorrupt, etag, rec.Version)
			}
		}
		if ifNewer != 0 && rec.Version <= ifNewer {
			// A node that ignored If-None-Match, or one behind the
			// caller: nothing newer either way.
			return record.Record{}, origin.ErrNotModified
		}
		return rec, nil
	case http.StatusNotModified:
		if ifNewer == 0 {
			return record.Record{}, &nodeError{err: fmt.Errorf("%w: 304 answer to an unconditional read of %s/%s", origin.ErrUnavailable, ns, key), sick: true, sent: true}
		}
		return record.Record{}, origin.ErrNotModified
	}
	return record.Record{}, decodeError(status, body)
}

// decodeSnapshot decodes the answer to GET /v1/snapshots/{ns}.
func decodeSnapshot(ns string, status int, body []byte) (record.Snapshot, error) {
	if status != http.StatusOK {
		return record.Snapshot{}, decodeError(status, body)
	}
	snap, err := record.UnmarshalSnapshot(body)
	if err != nil {
		if !errors.Is(err, record.ErrCorrupt) {
			err = fmt.Errorf("%w: %v", record.ErrCorrupt, err)
		}
		return record.Snapshot{}, fmt.Errorf("snapshot %s: answer body: %w", ns, err)
	}
	if snap.Namespace != ns {
		return record.Snapshot{}, fmt.Errorf("snapshot %s: %w: the node answered with the snapshot of %s", ns, record.ErrCorrupt, snap.Namespace)
	}
	return snap, nil
}

// decodePart decodes the answer to GET /v1/snapshots/{ns}/{name}: the
// part's bytes, at most limit of them, undecoded (package checkpoint
// decodes and verifies them).
func decodePart(ns, name string, limit int64, status int, body []byte) ([]byte, error) {
	if status != http.StatusOK {
		return nil, decodeError(status, body)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s of %s: %w: answer larger than %d bytes (Config.MaxSnapshotSize)", name, ns, record.ErrCorrupt, limit)
	}
	return body, nil
}

// decodeLog decodes the answer to GET /v1/log?after=&limit=.
func decodeLog(after record.Version, limit int, status int, body []byte) ([]record.Change, error) {
	if status != http.StatusOK {
		return nil, decodeError(status, body)
	}
	return wire.DecodeLogPage(body, after, limit)
}

// decodeDone decodes the answer to a write: any 2xx is success.
func decodeDone(status int, body []byte) error {
	if status >= 200 && status < 300 {
		return nil
	}
	return decodeError(status, body)
}

// decodeError maps an error answer back to the sentinel it stands for, by
// its code. An answer without a known code is off-protocol: a node failure.
func decodeError(status int, body []byte) error {
	var e wire.Error
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = excerpt(body)
	}
	msg := fmt.Sprintf("node answered %d: %s", status, e.Error)
	switch e.Code {
	case wire.CodeNotFound:
		return fmt.Errorf("%w (%s)", origin.ErrNotFound, msg)
	case wire.CodeConflict:
		return fmt.Errorf("%w (%s)", origin.ErrConflict, msg)
	case wire.CodeTruncated:
		return fmt.Errorf("%w (%s)", origin.ErrLogTruncated, msg)
	case wire.CodeInvalid, wire.CodeTooLarge:
		return fmt.Errorf("%w (%s)", record.ErrInvalid, msg)
	case wire.CodeCorrupt:
		return fmt.Errorf("%w in the origin (%s)", record.ErrCorrupt, msg)
	case wire.CodeUnauthorized:
		return fmt.Errorf("%w (%s)", ErrUnauthorized, msg)
	case wire.CodeUnavailable:
		return &nodeError{err: fmt.Errorf("%w (%s)", origin.ErrUnavailable, msg), sent: true}
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return fmt.Errorf("%w (%s)", ErrUnauthorized, msg)
	}
	return &nodeError{err: fmt.Errorf("%w: off-protocol answer (%s)", origin.ErrUnavailable, msg), sick: true, sent: true}
}

// excerpt is a printable start of an answer body for an error message.
func excerpt(b []byte) string {
	const max = 200
	if len(b) > max {
		b = b[:max]
	}
	s := strings.ToValidUTF8(string(b), string(utf8.RuneError))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if s = strings.TrimSpace(s); s == "" {
		return "(no message)"
	}
	return s
}
