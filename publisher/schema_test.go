package publisher_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

const (
	goodRoute = `{"deployment_id":"d1","upstreams":["http://127.0.0.1:9"],"require_key":true,"keyspace":"ks"}`
	goodKey   = `{"key_id":"k1","enabled":true}`
)

var keyPath = "ks/" + strings.Repeat("0f", 32)

// withSchemas is a newEnv edit: the default schemas (routes and keys) plus
// a "blobs" namespace registered by the library user.
func withSchemas(c *publisher.Config) {
	c.Schemas = schema.Builtin()
	type blob struct {
		Size uint8 `json:"size"`
	}
	if err := c.Schemas.Register("blobs", schema.JSON[blob](nil)); err != nil {
		panic(err)
	}
}

// malformed are values the schemas refuse, each with a word the error
// must contain (the field it names).
var malformed = []struct {
	name, ns, key, value, field string
}{
	{"not JSON", "routes", "a.example.com", `{not json`, "bad JSON"},
	{"duplicate require_key", "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:9"],"require_key":true,"keyspace":"ks","require_key":false}`, `"require_key"`},
	{"unknown field", "routes", "a.example.com", `{"upstream":"http://127.0.0.1:9"}`, `"upstream"`},
	{"misspelt field", "routes", "a.example.com", `{"Upstreams":["http://127.0.0.1:9"]}`, `"Upstreams"`},
	{"no upstreams", "routes", "a.example.com", `{"upstreams":[]}`, `"upstreams"`},
	{"bad upstream", "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:9","ftp://x"]}`, `"upstreams[1]"`},
	{"key without keyspace", "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:9"],"require_key":true}`, `"keyspace"`},
	{"wrong type", "routes", "a.example.com", `{"upstreams":["http://127.0.0.1:9"],"require_key":"yes","keyspace":"ks"}`, `"require_key"`},
	{"key without key_id", "keys", keyPath, `{"enabled":true}`, `"key_id"`},
	{"duplicate enabled", "keys", keyPath, `{"key_id":"k1","enabled":false,"enabled":true}`, `"enabled"`},
	{"bad expiry", "keys", keyPath, `{"key_id":"k1","enabled":true,"expires":"soon"}`, `"expires"`},
	{"registered namespace, out of range", "blobs", "b", `{"size":256}`, `"size"`},
}

// TestAPIRefusesMalformedValues: a PUT of a value its namespace's schema
// refuses answers 400 naming the field, and nothing is written: the last
// good value stays. Namespaces without a schema take any bytes.
func TestAPIRefusesMalformedValues(t *testing.T) {
	e := newEnv(t, backends[1].open(t), withSchemas)
	api := newAPI(t, e, token)
	good := map[string]string{"routes/a.example.com": goodRoute, "keys/" + keyPath: goodKey, "blobs/b": `{"size":255}`}
	versions := map[string]record.Version{}
	for path, v := range good {
		if st, _, body := api.do("PUT", "/v1/records/"+path, token, strings.NewReader(v)); st != http.StatusOK {
			t.Fatalf("PUT %s %s: %d %s", path, v, st, body)
		}
		ns, key, _ := strings.Cut(path, "/")
		rec, err := e.pub.Get(testCtx(t), ns, key)
		if err != nil {
			t.Fatal(err)
		}
		versions[path] = rec.Version
	}
	for _, tc := range malformed {
		path := tc.ns + "/" + tc.key
		st, _, body := api.do("PUT", "/v1/records/"+path, token, strings.NewReader(tc.value))
		if st != http.StatusBadRequest {
			t.Errorf("%s: PUT answered %d %s, want 400", tc.name, st, body)
			continue
		}
		if msg := errorOf(t, body); !strings.Contains(msg, tc.field) || !strings.Contains(msg, path) {
			t.Errorf("%s: error %q does not name %s and %s", tc.name, msg, path, tc.field)
		}
		rec, err := e.pub.Get(testCtx(t), tc.ns, tc.key)
		if err != nil || rec.Version != versions[path] || string(rec.Value) != good[path] {
			t.Errorf("%s: stored %s at %s (%v), want the last good value at %s", tc.name, rec.Value, rec.Version, err, versions[path])
		}
	}
	if got := e.metric(t, "dataplane_publisher_rejected_total"); got != float64(len(malformed)) {
		t.Errorf("rejected_total = %v, want %d", got, len(malformed))
	}
	// A key of the wrong shape for the keys namespace is refused too.
	if st, _, body := api.do("PUT", "/v1/records/keys/ks/not-a-hash", token, strings.NewReader(goodKey)); st != http.StatusBadRequest || !strings.Contains(errorOf(t, body), "key") {
		t.Errorf("PUT keys/ks/not-a-hash: %d %s", st, body)
	}
	// A namespace without a schema stores any bytes.
	if st, _, body := api.do("PUT", "/v1/records/notes/n1", token, strings.NewReader(`{not json`)); st != http.StatusOK {
		t.Errorf("PUT notes/n1: %d %s", st, body)
	}
}

// TestPutVersionRefusesMalformedValues: the outbox sync's entry point
// refuses too, with an error wrapping schema.ErrInvalid, and writes
// nothing.
func TestPutVersionRefusesMalformedValues(t *testing.T) {
	e := newEnv(t, backends[1].open(t), withSchemas)
	clock := record.NewClock(nil)
	for _, tc := range malformed {
		written, err := e.pub.PutVersion(testCtx(t), record.Record{Namespace: tc.ns, Key: tc.key, Value: []byte(tc.value), Version: clock.Now()})
		if written || !errors.Is(err, schema.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: PutVersion = %v, %v; want a schema error naming %s", tc.name, written, err, tc.field)
		}
		if _, err := e.pub.Get(testCtx(t), tc.ns, tc.key); err == nil {
			t.Errorf("%s: something was written", tc.name)
		}
	}
	// Deletes carry no value and always pass.
	if _, err := e.pub.PutVersion(testCtx(t), record.Record{Namespace: "routes", Key: "a.example.com", Tombstone: true, Version: clock.Now()}); err != nil {
		t.Errorf("tombstone: %v", err)
	}
}

// TestImportRefusesMalformedValues: a line whose value breaks its
// namespace's schema is a rejected line naming the field; the lines around
// it are written, and the key it targets keeps its last good value.
func TestImportRefusesMalformedValues(t *testing.T) {
	e := newEnv(t, backends[0].open(t), withSchemas)
	if _, err := e.pub.Put(testCtx(t), "routes", "a.example.com", []byte(goodRoute)); err != nil {
		t.Fatal(err)
	}
	before, err := e.pub.Get(testCtx(t), "routes", "a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tc := range malformed {
		lines = append(lines, fmt.Sprintf(`{"namespace":%q,"key":%q,%s}`, tc.ns, tc.key, lineValue(tc.value)))
	}
	lines = append(lines, fmt.Sprintf(`{"namespace":"routes","key":"b.example.com","value":%s}`, goodRoute))
	st, err := e.pub.Import(testCtx(t), strings.NewReader(strings.Join(lines, "\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Written != 1 || st.Rejected != len(malformed) || len(st.Errors) != len(malformed) {
		t.Fatalf("stats %+v, want 1 written and %d rejected", st, len(malformed))
	}
	for i, tc := range malformed {
		le := st.Errors[i]
		if le.Line != i+1 || !strings.Contains(le.Reason, tc.field) {
			t.Errorf("%s: rejection %+v, want line %d naming %s", tc.name, le, i+1, tc.field)
		}
	}
	after, err := e.pub.Get(testCtx(t), "routes", "a.example.com")
	if err != nil || after.Version != before.Version || string(after.Value) != goodRoute {
		t.Fatalf("after import routes/a.example.com = %s at %s (%v), want the last good value", after.Value, after.Version, err)
	}
	if _, err := e.pub.Get(testCtx(t), "keys", keyPath); err == nil {
		t.Fatal("a rejected key line was written")
	}
	if _, err := e.pub.Get(testCtx(t), "routes", "b.example.com"); err != nil {
		t.Fatalf("the good line after the bad ones: %v", err)
	}
}

// lineValue is the value part of an import line carrying v: "value" when v
// is JSON (so a duplicate field reaches the schema as written), else
// "value_base64".
func lineValue(v string) string {
	if !json.Valid([]byte(v)) {
		return fmt.Sprintf(`"value_base64":%q`, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	return `"value":` + v
}
