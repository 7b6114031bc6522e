package schema_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/dataplane/dataplane/schema"
)

// fuzzDoc has a field of every kind the strict decoder treats apart.
type fuzzDoc struct {
	S   string            `json:"s"`
	B   bool              `json:"b,omitempty"`
	I8  int8              `json:"i8"`
	U16 uint16            `json:"u16"`
	F32 float32           `json:"f32"`
	L   []string          `json:"l"`
	A   [2]int            `json:"a"`
	M   map[string]string `json:"m"`
	Any any               `json:"any"`
	T   *time.Time        `json:"t"`
	In  *fuzzDoc          `json:"in"`
}

// FuzzUnmarshal decodes arbitrary bytes strictly into a struct and into an
// untyped value. It never panics; every error is a *FieldError; what it
// accepts is valid JSON that json.Unmarshal decodes to the same value; and
// what it accepts, encoded again, it accepts again.
func FuzzUnmarshal(f *testing.F) {
	// The seed corpus is in testdata/fuzz/FuzzUnmarshal.
	f.Fuzz(func(t *testing.T, b []byte) {
		var d fuzzDoc
		err := schema.Unmarshal(b, &d)
		check(t, b, err, &d, new(fuzzDoc))
		var v any
		err = schema.Unmarshal(b, &v)
		check(t, b, err, &v, new(any))
		for _, p := range []func([]byte) error{
			func(b []byte) error { _, _, err := schema.ParseRoute(b); return err },
			func(b []byte) error { _, err := schema.ParseAPIKey(b); return err },
		} {
			if err := p(b); err != nil && !errors.As(err, new(*schema.FieldError)) {
				t.Fatalf("parse error %v is not a *FieldError", err)
			}
		}
	})
}

func check[T any](t *testing.T, b []byte, err error, got *T, fresh *T) {
	t.Helper()
	if err != nil {
		var fe *schema.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v (%T) is not a *FieldError", err, err)
		}
		return
	}
	if !json.Valid(b) {
		t.Fatalf("accepted invalid JSON %q", b)
	}
	if jerr := json.Unmarshal(b, fresh); jerr != nil {
		t.Fatalf("accepted %q, which json.Unmarshal refuses: %v", b, jerr)
	}
	if !reflect.DeepEqual(got, fresh) {
		t.Fatalf("%q decodes to %#v, json.Unmarshal gives %#v", b, *got, *fresh)
	}
	again, merr := json.Marshal(got)
	if merr != nil {
		return // e.g. a NaN cannot be encoded; nothing more to check
	}
	var back T
	if err := schema.Unmarshal(again, &back); err != nil {
		t.Fatalf("re-encoded %q is refused: %v", again, err)
	}
}
