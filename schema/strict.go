package schema

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// FieldError says which field of a value is wrong and why.
type FieldError struct {
	// Field is the path of the field in the value, like "upstreams[1]" or
	// "meta.team"; empty for the value as a whole. A name that is not
	// made of letters, digits, '_', '-' and '.' is shown by its length
	// only, since errors are logged and values may carry secrets.
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "value: " + e.Reason
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Reason)
}

// Unmarshal decodes the JSON document b into v (a non-nil pointer) like
// json.Unmarshal, but refuses what json.Unmarshal silently resolves:
//   - a field given twice in one object (json.Unmarshal keeps the last);
//   - a field v's type does not have, or has under another spelling
//     (json.Unmarshal matches names case-insensitively);
//   - a number out of range for its field, or with a fraction for an
//     integer field, or beyond float64 where the type holds any value;
//   - bytes that are not valid UTF-8 (json.Unmarshal replaces them);
//   - anything after the document.
//
// Every error is a *FieldError naming the field.
func Unmarshal(b []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("schema: Unmarshal needs a non-nil pointer, got %T", v)
	}
	if !utf8.Valid(b) {
		return &FieldError{Reason: "not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	w := walker{dec: dec}
	if err := w.value(rv.Type().Elem(), ""); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FieldError{Reason: "more than one JSON value"}
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return decodeError(err)
	}
	return nil
}

// decodeError turns an error of json.Decoder.Decode into a FieldError.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &FieldError{Field: showPath(te.Field), Reason: fmt.Sprintf("%s where %s is expected", te.Value, typeName(te.Type))}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &FieldError{Reason: fmt.Sprintf("bad JSON at byte %d: %v", se.Offset, se)}
	}
	return &FieldError{Reason: err.Error()}
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// walker reads one JSON document token by token, guided by the Go type it
// will be decoded into, and refuses what Unmarshal documents.
type walker struct {
	dec   *json.Decoder
	depth int // objects and arrays open around the current value
}

// MaxDepth is how deeply Unmarshal lets objects and arrays nest.
const MaxDepth = 256

// value checks the next JSON value, which is to be decoded into a t at path.
func (w *walker) value(t reflect.Type, path string) error {
	if w.depth > MaxDepth {
		return &FieldError{Field: showPath(path), Reason: fmt.Sprintf("nested deeper than %d", MaxDepth)}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (reflect.PointerTo(t).Implements(unmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType)) {
		return w.custom(t, path)
	}
	tok, err := w.dec.Token()
	if err != nil {
		return syntaxError(err, path)
	}
	kind := reflect.Interface // untyped: any JSON value
	if t != nil {
		kind = t.Kind()
	}
	var got string
	switch tok := tok.(type) {
	case nil:
		return nil // null leaves any field as it is
	case json.Delim:
		switch {
		case tok == '{' && kind == reflect.Struct:
			return w.object(path, structFields(t), nil)
		case tok == '{' && kind == reflect.Map:
			return w.object(path, nil, t.Elem())
		case tok == '{' && kind == reflect.Interface:
			return w.object(path, nil, nil)
		case tok == '[' && kind == reflect.Slice:
			return w.array(path, t.Elem(), -1)
		case tok == '[' && kind == reflect.Array:
			return w.array(path, t.Elem(), t.Len())
		case tok == '[' && kind == reflect.Interface:
			return w.array(path, nil, -1)
		case tok == '{':
			got = "an object"
		default:
			got = "an array"
		}
	case json.Number:
		switch kind {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64, reflect.Interface:
			return checkNumber(tok, t, path)
		}
		got = "a number"
	case string:
		if kind == reflect.String || kind == reflect.Interface || kind == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return nil // a []byte takes base64, which Decode checks
		}
		got = "a string"
	case bool:
		if kind == reflect.Bool || kind == reflect.Interface {
			return nil
		}
		got = "a boolean"
	}
	return &FieldError{Field: showPath(path), Reason: fmt.Sprintf("%s where %s is expected", got, typeName(t))}
}

// object checks the members of an object whose '{' was read. With fields
// (a struct), only those names are allowed, spelled exactly; otherwise any
// name, with members decoded into elem (nil: untyped).
func (w *walker) object(path string, fields map[string]reflect.Type, elem reflect.Type) error {
	w.depth++
	defer func() { w.depth-- }()
	seen := make(map[string]bool)
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return syntaxError(err, path)
		}
		name := tok.(string) // the decoder only returns string keys here
		sub := join(path, name)
		if seen[name] {
			return &FieldError{Field: showPath(sub), Reason: "given more than once"}
		}
		seen[name] = true
		t := elem
		if fields != nil {
			ft, ok := fields[name]
			if !ok {
				return &FieldError{Field: showPath(sub), Reason: unknownField(name, fields)}
			}
			t = ft
		}
		if err := w.value(t, sub); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // '}'
		return syntaxError(err, path)
	}
	return nil
}

// array checks the elements of an array whose '[' was read; max >= 0
// bounds their number (a Go array, where json.Unmarshal drops the excess).
func (w *walker) array(path string, elem reflect.Type, max int) error {
	w.depth++
	defer func() { w.depth-- }()
	for i := 0; w.dec.More(); i++ {
		if i == max {
			return &FieldError{Field: showPath(path), Reason: fmt.Sprintf("more than %d elements", max)}
		}
		if err := w.value(elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	if _, err := w.dec.Token(); err != nil { // ']'
		return syntaxError(err, path)
	}
	return nil
}

// custom checks a value whose type decodes itself (like time.Time): its
// JSON must have no duplicate fields, and the type must accept it; its
// error is then named by the field.
func (w *walker) custom(t reflect.Type, path string) error {
	var raw json.RawMessage
	if err := w.dec.Decode(&raw); err != nil {
		return syntaxError(err, path)
	}
	if err := Unmarshal(raw, new(any)); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.Field = showPath(join(path, fe.Field))
		}
		return err
	}
	if string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
		return &FieldError{Field: showPath(path), Reason: "not a valid " + typeName(t)}
	}
	return nil
}

// checkNumber refuses a number that its field cannot hold exactly in range.
func checkNumber(n json.Number, t reflect.Type, path string) error {
	s := n.String()
	var err error
	kind := reflect.Interface
	if t != nil {
		kind = t.Kind()
	}
	switch kind {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		_, err = strconv.ParseInt(s, 10, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		_, err = strconv.ParseUint(s, 10, t.Bits())
	case reflect.Float32, reflect.Float64:
		_, err = strconv.ParseFloat(s, t.Bits())
	case reflect.Interface:
		_, err = strconv.ParseFloat(s, 64)
	default:
		return nil // a number where something else is expected: Decode names it
	}
	if err == nil {
		return nil
	}
	what := "out of range"
	if errors.Is(err, strconv.ErrSyntax) {
		what = "not an integer"
	}
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return &FieldError{Field: showPath(path), Reason: fmt.Sprintf("number %s is %s for %s", s, what, typeName(t))}
}

func syntaxError(err error, path string) error {
	if errors.Is(err, io.EOF) {
		return &FieldError{Field: showPath(path), Reason: "JSON ends early"}
	}
	return &FieldError{Field: showPath(path), Reason: "bad JSON: " + err.Error()}
}

// fieldCache holds structFields per struct type (reflect.Type ->
// map[string]reflect.Type, read-only once stored).
var fieldCache sync.Map

// structFields maps the JSON names of t's fields to their types, as
// encoding/json sees them (embedded structs without a name are flattened).
func structFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := buildFields(t)
	fieldCache.Store(t, m)
	return m
}

func buildFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			ft := f.Type
			if strings.Contains(tag, ",string") {
				ft = nil // a value quoted in a string: Decode checks it
			}
			if _, dup := out[name]; !dup {
				out[name] = ft
			}
		}
	}
	add(t)
	return out
}

func unknownField(name string, fields map[string]reflect.Type) string {
	for f := range fields {
		if strings.EqualFold(f, name) {
			return fmt.Sprintf("unknown field (names are case-sensitive: did you mean %q?)", f)
		}
	}
	return "unknown field"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	if name == "" {
		return path
	}
	return path + "." + name
}

// showPath returns path if every byte of it is safe to log, else a
// description that does not show it: names come from the value, which may
// hold credentials.
func showPath(path string) string {
	if len(path) > 128 {
		return fmt.Sprintf("(a field path of %d bytes)", len(path))
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.[]", c) >= 0) {
			return fmt.Sprintf("(a field path of %d bytes)", len(path))
		}
	}
	return path
}

func typeName(t reflect.Type) string {
	if t == nil {
		return "any value"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer (" + t.Kind().String() + ")"
	case reflect.Float32, reflect.Float64:
		return "a number (" + t.Kind().String() + ")"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		if t.PkgPath() == "time" && t.Name() == "Time" {
			return "an RFC 3339 time"
		}
		return "an object"
	case reflect.Interface:
		return "any value"
	}
	return t.String()
}
