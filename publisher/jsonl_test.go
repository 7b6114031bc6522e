package publisher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
)

// importInput is a mix of good and bad lines; wantRejected maps each bad
// line's number to a word its reason must contain.
var (
	oversized   = fmt.Sprintf(`{"namespace":"routes","key":"big","value":"%s"}`, strings.Repeat("x", record.MaxValueSize))
	importInput = strings.Join([]string{
		`{"namespace":"routes","key":"a.example.com","value":{"upstream":"http://10.0.0.1","key_required":true}}`, // 1 good
		`{"namespace":"routes","key":"b.example.com","value": [1, 2,  3]}`,                                        // 2 good (compacted)
		`{"namespace":"routes","key":"broken.example.com","value":{`,                                              // 3 bad JSON
		``, // 4 blank: skipped
		`{"namespace":"routes","key":"","value":1}`, // 5 empty key
		oversized, // 6 oversized value
		`{"namespace":"Routes","key":"c.example.com","value":1}`,               // 7 bad namespace
		`{"namespace":"routes","key":"d.example.com","vale":1}`,                // 8 unknown field
		`{"namespace":"routes","key":"e.example.com","delete":true,"value":1}`, // 9 delete with value
		`{"namespace":"routes","key":"f.example.com"}`,                         // 10 no value
		`{"namespace":"routes","key":"g.example.com","value":1} {"extra":1}`,   // 11 two values
		`{"namespace":"keys","key":"ks/abc","value_base64":"AAEC/w=="}`,        // 12 good, binary
		`{"namespace":"keys","key":"ks/bad","value_base64":"***"}`,             // 13 bad base64
		`{"namespace":"routes","key":"h.example.com","value":null}`,            // 14 good: JSON null
		`   `, // 15 blank
		`{"namespace":"routes","key":"gone.example.com","delete":true}`,                                           // 16 delete of an absent key: unchanged
		`{"namespace":"routes","key":"a.example.com","value":{"upstream":"http://10.0.0.1","key_required":true}}`, // 17 same again: unchanged
		`not json at all`, // 18 bad JSON
	}, "\n")
	wantRejected = map[int]string{3: "JSON", 5: "empty key", 6: "limit", 7: "namespace", 8: "unknown field", 9: "delete", 10: "missing", 11: "more than one", 13: "base64", 18: "JSON"}
	goodKeys     = map[string]string{"a.example.com": `{"upstream":"http://10.0.0.1","key_required":true}`, "b.example.com": `[1,2,3]`, "h.example.com": `null`}
	badKeys      = []string{"broken.example.com", "big", "c.example.com", "d.example.com", "e.example.com", "f.example.com", "g.example.com", "gone.example.com"}
)

func TestImportMixedLines(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		var calls []publisher.ImportStats
		st, err := e.pub.Import(testCtx(t), strings.NewReader(importInput), func(s publisher.ImportStats) { calls = append(calls, s) })
		if err != nil {
			t.Fatal(err)
		}
		if st.Lines != 16 || st.Written != 4 || st.Unchanged != 2 || st.Rejected != len(wantRejected) {
			t.Fatalf("stats = %+v; want 16 lines, 4 written, 2 unchanged, %d rejected", st, len(wantRejected))
		}
		if len(st.Errors) != len(wantRejected) {
			t.Fatalf("errors = %+v", st.Errors)
		}
		for _, le := range st.Errors {
			word, ok := wantRejected[le.Line]
			if !ok {
				t.Errorf("line %d rejected (%s), but it is good", le.Line, le.Reason)
				continue
			}
			if !strings.Contains(le.Reason, word) {
				t.Errorf("line %d: reason %q does not mention %q", le.Line, le.Reason, word)
			}
		}
		if len(calls) == 0 || calls[len(calls)-1].Lines != st.Lines {
			t.Fatalf("progress calls %+v, want a final one", calls)
		}

		got := state(t, e.store, "routes", append(badKeys, "a.example.com", "b.example.com", "h.example.com")...)
		for k, want := range goodKeys {
			if r, ok := got[k]; !ok || string(r.Value) != want {
				t.Errorf("routes/%s = %q, want %q", k, r.Value, want)
			}
		}
		for _, k := range badKeys {
			if r, ok := got[k]; ok {
				t.Errorf("rejected line half-written: routes/%s = %+v", k, r)
			}
		}
		bin := state(t, e.store, "keys", "ks/abc", "ks/bad")
		if !bytes.Equal(bin["ks/abc"].Value, []byte{0, 1, 2, 0xff}) || len(bin) != 1 {
			t.Fatalf("keys namespace = %+v, want only ks/abc with its bytes", bin)
		}
		if cs := logOf(t, e.store); len(cs) != 4 {
			t.Fatalf("change log has %d entries, want 4 (one per write): %+v", len(cs), cs)
		}
		if n := e.notify.records(); len(n) != 4 {
			t.Fatalf("%d notifications, want 4", len(n))
		}
	})
}

func TestImportTwiceIsUnchanged(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		var in strings.Builder
		for i := 0; i < 1100; i++ { // crosses a progress boundary
			fmt.Fprintf(&in, "{\"namespace\":\"keys\",\"key\":\"ks/%04d\",\"value\":{\"enabled\": %v}}\n", i, i%2 == 0)
		}
		fmt.Fprintf(&in, "{\"namespace\":\"keys\",\"key\":\"ks/0001\",\"delete\":true}\n")
		first, err := e.pub.Import(testCtx(t), strings.NewReader(in.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if first.Written != 1101 || first.Rejected != 0 {
			t.Fatalf("first import %+v, want 1101 written", first)
		}
		logBefore := len(logOf(t, e.store))
		before := state(t, e.store, "keys", "ks/0000", "ks/0001", "ks/1099")

		var progress int
		second, err := e.pub.Import(testCtx(t), strings.NewReader(in.String()), func(publisher.ImportStats) { progress++ })
		if err != nil {
			t.Fatal(err)
		}
		// Only ks/0001 moves: it is deleted now, so its put line brings it
		// back and the delete line after it deletes it again.
		if second.Unchanged != 1099 || second.Written != 2 || second.Rejected != 0 {
			t.Fatalf("second import %+v, want 1099 unchanged and ks/0001's put+delete", second)
		}
		if progress != 2 { // at line 1000 and at the end
			t.Fatalf("%d progress calls, want 2", progress)
		}
		after := state(t, e.store, "keys", "ks/0000", "ks/0001", "ks/1099")
		if after["ks/0000"].Version != before["ks/0000"].Version || after["ks/1099"].Version != before["ks/1099"].Version {
			t.Fatal("an unchanged key got a new version")
		}
		if !after["ks/0001"].Tombstone {
			t.Fatal("ks/0001 not deleted")
		}
		if got := len(logOf(t, e.store)); got != logBefore+2 {
			t.Fatalf("change log grew by %d, want 2", got-logBefore)
		}

		// Without the put-then-delete pair, a re-import is entirely unchanged.
		clean := strings.Join(strings.Split(in.String(), "\n")[2:1100], "\n")
		third, err := e.pub.Import(testCtx(t), strings.NewReader(clean), nil)
		if err != nil {
			t.Fatal(err)
		}
		if third.Unchanged != third.Lines || third.Written != 0 {
			t.Fatalf("re-import %+v, want every line unchanged", third)
		}
	})
}

func TestImportLongLine(t *testing.T) {
	e := newEnv(t, backends[1].open(t), nil)
	in := `{"namespace":"routes","key":"a","value":"` + strings.Repeat("x", 5<<20) + "\"}\n" +
		`{"namespace":"routes","key":"b","value":1}` // no final newline
	st, err := e.pub.Import(testCtx(t), strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rejected != 1 || st.Errors[0].Line != 1 || !strings.Contains(st.Errors[0].Reason, "longer") || st.Written != 1 {
		t.Fatalf("stats %+v, want line 1 rejected as too long and line 2 written", st)
	}
}

// failingStore fails every compare-and-swap after the first n.
type failingStore struct {
	origin.Store
	n int
}

func (s *failingStore) CompareAndSwap(ctx context.Context, rec record.Record, prev record.Version) error {
	if s.n <= 0 {
		return fmt.Errorf("disk on fire: %w", origin.ErrUnavailable)
	}
	s.n--
	return s.Store.CompareAndSwap(ctx, rec, prev)
}

func TestImportStopsWhenTheOriginFails(t *testing.T) {
	store := &failingStore{Store: backends[1].open(t), n: 2}
	e := newEnv(t, store, nil)
	in := "{\"namespace\":\"r\",\"key\":\"1\",\"value\":1}\n{\"namespace\":\"r\",\"key\":\"bad\"}\n{\"namespace\":\"r\",\"key\":\"2\",\"value\":1}\n{\"namespace\":\"r\",\"key\":\"3\",\"value\":1}\n{\"namespace\":\"r\",\"key\":\"4\",\"value\":1}\n"
	st, err := e.pub.Import(testCtx(t), strings.NewReader(in), nil)
	if !errors.Is(err, origin.ErrUnavailable) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("Import error %v, want ErrUnavailable naming line 4", err)
	}
	if st.Written != 2 || st.Rejected != 1 {
		t.Fatalf("stats %+v, want 2 written and 1 rejected before the failure", st)
	}
}

func TestExportRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b.open(t), nil)
		ctx := testCtx(t)
		writes := map[string][]byte{
			"json":   []byte(`{"a": 1}`), // stored as given; exported compacted
			"binary": {0, 1, 2, 0xff},
			"empty":  {},
			"text":   []byte("plain text"),
			"gone":   []byte(`1`),
		}
		for k, v := range writes {
			if _, err := e.pub.Put(ctx, "cfg", k, v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.pub.Put(ctx, "other", "x", []byte(`1`)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Delete(ctx, "cfg", "gone"); err != nil {
			t.Fatal(err)
		}
		// Half of the state in a snapshot, half in the log after it.
		if _, err := e.pub.Snapshot(ctx, "cfg"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.pub.Put(ctx, "cfg", "late", []byte(`"after the snapshot"`)); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := e.pub.Export(ctx, "cfg", &out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 5 { // json, binary, empty, text, late; not gone, not other/x
			t.Fatalf("export has %d lines, want 5:\n%s", len(lines), out.String())
		}
		if !strings.Contains(lines[0], `"key":"binary"`) || !strings.Contains(lines[0], `"value_base64":"AAEC/w=="`) {
			t.Fatalf("first line %s, want key binary in base64 (sorted by key)", lines[0])
		}

		// Into a fresh origin: the same state.
		e2 := newEnv(t, b.open(t), nil)
		st, err := e2.pub.Import(ctx, bytes.NewReader(out.Bytes()), nil)
		if err != nil || st.Written != 5 || st.Rejected != 0 {
			t.Fatalf("import of the export: %+v, %v", st, err)
		}
		for _, k := range []string{"json", "binary", "empty", "text", "late"} {
			a, _ := e.pub.Get(ctx, "cfg", k)
			c, err := e2.pub.Get(ctx, "cfg", k)
			if err != nil {
				t.Fatal(err)
			}
			want := a.Value
			if k == "json" {
				want = []byte(`{"a":1}`)
			}
			if !bytes.Equal(c.Value, want) {
				t.Errorf("cfg/%s round-tripped to %q, want %q", k, c.Value, want)
			}
		}
		// Back into the origin it came from: nothing changes.
		st, err = e.pub.Import(ctx, bytes.NewReader(out.Bytes()), nil)
		if err != nil || st.Unchanged != 5 || st.Written != 0 {
			t.Fatalf("re-import of the export into its source: %+v, %v; want all unchanged", st, err)
		}
	})
}
