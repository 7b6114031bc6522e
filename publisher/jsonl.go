package publisher

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// The JSON Lines format of Import and Export, one record per line:
//
//	{"namespace":"routes","key":"a.example.com","value":{"upstreams":["http://10.0.0.1"]}}
//	{"namespace":"routes","key":"b.example.com","delete":true}
//	{"namespace":"blobs","key":"k","value_base64":"AAEC"}
//
// "value" is any JSON value, stored compacted; "value_base64" carries bytes
// that are not JSON. Export writes "value" when the stored bytes are JSON and
// "value_base64" otherwise, plus the record's "version" (hex), which Import
// accepts and ignores: an import always assigns fresh versions.
type jsonLine struct {
	Namespace   string          `json:"namespace"`
	Key         string          `json:"key"`
	Value       json.RawMessage `json:"value,omitempty"`
	ValueBase64 *string         `json:"value_base64,omitempty"`
	Delete      bool            `json:"delete,omitempty"`
	Version     string          `json:"version,omitempty"`
}

// MaxImportErrors is how many rejected lines ImportStats.Errors lists; the
// count in ImportStats.Rejected goes on.
const MaxImportErrors = 1000

// maxLineLen bounds one import line: room for the largest value even when
// indented or base64-encoded.
const maxLineLen = 4*record.MaxValueSize + 64<<10

// progressEvery is how many lines Import reads between progress calls.
const progressEvery = 1000

// LineError says why an import line was rejected.
type LineError struct {
	// Line is the 1-based line number in the input.
	Line int `json:"line"`
	// Reason names what was wrong.
	Reason string `json:"reason"`
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// ImportStats summarises an import.
type ImportStats struct {
	// Lines is how many non-blank lines were read.
	Lines int `json:"lines"`
	// Written is how many lines stored a new version.
	Written int `json:"written"`
	// Unchanged is how many lines asked for the state already stored (the
	// same value, or a delete of a deleted or absent key): no new version.
	Unchanged int `json:"unchanged"`
	// Rejected is how many lines were rejected; nothing of them was written.
	Rejected int `json:"rejected"`
	// Errors lists the first MaxImportErrors rejected lines, in order.
	Errors []LineError `json:"errors,omitempty"`
}

func (s *ImportStats) reject(line int, reason string) {
	s.Rejected++
	if len(s.Errors) < MaxImportErrors {
		s.Errors = append(s.Errors, LineError{Line: line, Reason: reason})
	}
}

// Import reads JSON Lines from r and writes each line's record. A bad line
// (malformed JSON, unknown field, invalid namespace or key, oversized value,
// a delete with a value, a value its namespace's schema refuses (see
// Config.Schemas), ...) is rejected with its line number and reason
// and never stops the lines after it; each line is written whole or not at
// all. A line asking for the state already stored is counted unchanged and
// writes nothing, so importing the same file twice writes nothing the second
// time. Blank lines are skipped.
//
// progress, if not nil, is called every 1000 lines and at the end with the
// counts so far; it must not keep or modify Errors.
//
// Import stops early only when the origin fails (or ctx ends): it then
// returns the counts so far and an error naming the line it stopped at, which
// was not written; the lines before it were.
func (p *Publisher) Import(ctx context.Context, r io.Reader, progress func(ImportStats)) (ImportStats, error) {
	var st ImportStats
	br := bufio.NewReaderSize(r, 64<<10)
	report := func() {
		if progress != nil {
			progress(st)
		}
	}
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br, maxLineLen)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			report()
			return st, fmt.Errorf("import: read line %d: %w", n, err)
		}
		if tooLong {
			st.Lines++
			st.reject(n, fmt.Sprintf("line longer than %d bytes", maxLineLen))
			p.m.rejected.Inc()
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		st.Lines++
		if err := p.importLine(ctx, line, &st); err != nil {
			var le LineError
			if errors.As(err, &le) {
				st.reject(n, le.Reason)
				p.m.rejected.Inc()
			} else {
				report()
				return st, fmt.Errorf("import: line %d: %w", n, err)
			}
		}
		if st.Lines%progressEvery == 0 {
			report()
		}
		if err := ctx.Err(); err != nil {
			report()
			return st, fmt.Errorf("import: after line %d: %w", n, err)
		}
	}
	report()
	return st, nil
}

// importLine applies one line. A LineError rejects the line; any other
// error is the origin's and stops the import.
func (p *Publisher) importLine(ctx context.Context, line []byte, st *ImportStats) error {
	rec, err := parseLine(line)
	if err != nil {
		return err
	}
	if err := p.checkSchema(rec); err != nil {
		return LineError{Reason: err.Error()}
	}
	cur, err := p.store.Get(ctx, rec.Namespace, rec.Key, 0)
	switch {
	case err == nil:
		if cur.Tombstone && rec.Tombstone || !cur.Tombstone && !rec.Tombstone && sameValue(cur.Value, rec.Value) {
			st.Unchanged++
			p.m.unchanged.Inc()
			return nil
		}
	case errors.Is(err, origin.ErrNotFound):
		if rec.Tombstone {
			st.Unchanged++
			p.m.unchanged.Inc()
			return nil
		}
	case errors.Is(err, record.ErrCorrupt):
		return LineError{Reason: fmt.Sprintf("stored record is unreadable, not overwritten: %v", err)}
	default:
		return err
	}
	op := "put"
	if rec.Tombstone {
		op = "delete"
	}
	if _, err := p.writeFresh(ctx, rec, op); err != nil {
		if errors.Is(err, record.ErrInvalid) || errors.Is(err, record.ErrCorrupt) {
			return LineError{Reason: err.Error()}
		}
		return err
	}
	st.Written++
	return nil
}

// parseLine decodes and validates one import line into a record without a
// version. Every failure is a LineError.
func parseLine(line []byte) (record.Record, error) {
	var l jsonLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return record.Record{}, LineError{Reason: "bad JSON: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return record.Record{}, LineError{Reason: "bad JSON: more than one value on the line"}
	}
	if err := record.ValidateKey(l.Namespace, l.Key); err != nil {
		return record.Record{}, LineError{Reason: err.Error()}
	}
	rec := record.Record{Namespace: l.Namespace, Key: l.Key, Tombstone: l.Delete}
	hasValue := l.Value != nil || l.ValueBase64 != nil
	switch {
	case l.Delete && hasValue:
		return record.Record{}, LineError{Reason: fmt.Sprintf("%s/%s: a delete carries no value", l.Namespace, l.Key)}
	case l.Delete:
		return rec, nil
	case l.Value != nil && l.ValueBase64 != nil:
		return record.Record{}, LineError{Reason: fmt.Sprintf("%s/%s: give \"value\" or \"value_base64\", not both", l.Namespace, l.Key)}
	case l.Value != nil:
		var buf bytes.Buffer
		if err := json.Compact(&buf, l.Value); err != nil {
			return record.Record{}, LineError{Reason: "bad JSON value: " + err.Error()}
		}
		rec.Value = buf.Bytes()
	case l.ValueBase64 != nil:
		v, err := base64.StdEncoding.DecodeString(*l.ValueBase64)
		if err != nil {
			return record.Record{}, LineError{Reason: fmt.Sprintf("%s/%s: bad value_base64: %v", l.Namespace, l.Key, err)}
		}
		rec.Value = v
	default:
		return record.Record{}, LineError{Reason: fmt.Sprintf("%s/%s: missing \"value\" (or \"delete\": true)", l.Namespace, l.Key)}
	}
	if len(rec.Value) > record.MaxValueSize {
		return record.Record{}, LineError{Reason: fmt.Sprintf("%s/%s: value is %d bytes, limit is %d", l.Namespace, l.Key, len(rec.Value), record.MaxValueSize)}
	}
	return rec, nil
}

// sameValue reports whether two stored values are the same: equal bytes, or
// JSON documents equal once compacted.
func sameValue(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !json.Valid(a) || !json.Valid(b) {
		return false
	}
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// readLine returns the next line of br without its line ending. A line
// longer than max is consumed and reported as tooLong, without its bytes.
// The last line may lack a newline; after it, readLine returns io.EOF.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > max+2 { // +2: the line ending
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
		case err != nil:
			return nil, false, err
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		return buf, tooLong, nil
	}
}

// Export writes the current state of namespace ns as JSON Lines, sorted by
// key: the namespace's snapshot updated with the change log after it.
// Deleted keys are left out. The output can be fed back to Import.
func (p *Publisher) Export(ctx context.Context, ns string, w io.Writer) error {
	snap, err := p.exportState(ctx, ns)
	if err != nil {
		return err
	}
	return writeExport(w, snap)
}

func (p *Publisher) exportState(ctx context.Context, ns string) (record.Snapshot, error) {
	if err := record.ValidateNamespace(ns); err != nil {
		return record.Snapshot{}, err
	}
	snap, _, err := p.build(ctx, ns)
	if err != nil {
		return record.Snapshot{}, fmt.Errorf("export %s: %w", ns, err)
	}
	return snap, nil
}

func writeExport(w io.Writer, snap record.Snapshot) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range snap.Records {
		if r.Tombstone {
			continue
		}
		l := jsonLine{Namespace: r.Namespace, Key: r.Key, Version: r.Version.String()}
		if len(r.Value) > 0 && json.Valid(r.Value) {
			l.Value = r.Value
		} else {
			s := base64.StdEncoding.EncodeToString(r.Value)
			l.ValueBase64 = &s
		}
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("export %s: %w", snap.Namespace, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export %s: %w", snap.Namespace, err)
	}
	return nil
}
