// Package schema checks record values against the shape their namespace
// requires, before anything is written.
//
// A Registry maps namespaces to Validators. Builtin returns one holding the
// namespaces the sentinel reads, routes and keys (their types, Route and
// APIKey, live here); a library user registers validators for namespaces of
// its own. The publisher (its API, put and import) and the PostgreSQL outbox
// sync ask the Registry before writing, so a malformed value is refused at
// the door with a message naming the field, and the last good value keeps
// serving; the sentinel parses stored values with the same functions.
//
// Values are JSON decoded strictly (Unmarshal): a field given twice, an
// unknown or misspelt field, or a number out of range is refused, never
// silently resolved the way encoding/json does.
package schema

import (
	"fmt"
	"sync"

	"github.com/dataplane/dataplane/record"
)

// ErrInvalid is wrapped by every error of a Validator a Registry runs: the
// value breaks its namespace's schema. It wraps record.ErrInvalid, so code
// that refuses invalid records (with 400, a rejected import line, a parked
// outbox row) refuses these too.
var ErrInvalid = fmt.Errorf("%w: value breaks its namespace's schema", record.ErrInvalid)

// Validator checks a value written under key in the namespace it is
// registered for. It must be safe for concurrent use and must not keep
// value. Its error should name the field that is wrong (a *FieldError does)
// and must not show secrets of the value: it is logged and sent back to
// the writer.
type Validator interface {
	Validate(key string, value []byte) error
}

// ValidatorFunc adapts a function to a Validator.
type ValidatorFunc func(key string, value []byte) error

// Validate calls f.
func (f ValidatorFunc) Validate(key string, value []byte) error { return f(key, value) }

// JSON returns a Validator that decodes a value strictly (Unmarshal) into
// a T and then, if check is not nil, calls check on it with the key.
func JSON[T any](check func(key string, v *T) error) Validator {
	return ValidatorFunc(func(key string, value []byte) error {
		var v T
		if err := Unmarshal(value, &v); err != nil {
			return err
		}
		if check != nil {
			return check(key, &v)
		}
		return nil
	})
}

// Registry maps namespaces to their Validators. The zero value is not
// usable; make one with NewRegistry or Builtin. It is safe for concurrent
// use.
type Registry struct {
	mu sync.RWMutex // guards m
	m  map[string]Validator
}

// NewRegistry returns a Registry without validators: every value passes.
func NewRegistry() *Registry {
	return &Registry{m: make(map[string]Validator)}
}

// Builtin returns a new Registry holding the validators of the namespaces
// the sentinel reads: RoutesNamespace (ValidateRoute) and KeysNamespace
// (ValidateAPIKey). Register more on it.
func Builtin() *Registry {
	r := NewRegistry()
	r.m[RoutesNamespace] = ValidatorFunc(ValidateRoute)
	r.m[KeysNamespace] = ValidatorFunc(ValidateAPIKey)
	return r
}

// Register makes v the Validator of namespace ns, replacing any; a nil v
// removes it. It fails if ns is not a valid namespace name.
func (r *Registry) Register(ns string, v Validator) error {
	if err := record.ValidateNamespace(ns); err != nil {
		return fmt.Errorf("schema: register: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v == nil {
		delete(r.m, ns)
	} else {
		r.m[ns] = v
	}
	return nil
}

// Has reports whether ns has a Validator.
func (r *Registry) Has(ns string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[ns] != nil
}

// Check validates value, to be written under ns/key, with ns's Validator.
// A namespace without one accepts any value. The error wraps ErrInvalid
// and starts with ns/key; a Validator that panics is an error too.
func (r *Registry) Check(ns, key string, value []byte) (err error) {
	r.mu.RLock()
	v := r.m[ns]
	r.mu.RUnlock()
	if v == nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s/%s: validator panicked: %v", ErrInvalid, ns, key, p)
		}
	}()
	if verr := v.Validate(key, value); verr != nil {
		return fmt.Errorf("%w: %s/%s: %w", ErrInvalid, ns, key, verr)
	}
	return nil
}

// CheckRecord is Check for a record: a tombstone carries no value and
// always passes.
func (r *Registry) CheckRecord(rec record.Record) error {
	if rec.Tombstone {
		return nil
	}
	return r.Check(rec.Namespace, rec.Key, rec.Value)
}
