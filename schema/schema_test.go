package schema_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/schema"
)

// TestUnmarshalRefuses: what encoding/json resolves silently is refused,
// with an error naming the field; valid documents decode as json.Unmarshal
// would.
func TestUnmarshalRefuses(t *testing.T) {
	t.Parallel()
	type inner struct {
		N int8 `json:"n"`
	}
	type doc struct {
		Name  string            `json:"name"`
		Flag  bool              `json:"flag,omitempty"`
		Count uint16            `json:"count"`
		Ratio float32           `json:"ratio"`
		Tags  []string          `json:"tags"`
		Meta  map[string]string `json:"meta"`
		Any   any               `json:"any"`
		When  *time.Time        `json:"when"`
		In    inner             `json:"in"`
		List  []inner           `json:"list"`
		Skip  string            `json:"-"`
		Plain string
	}
	for _, tc := range []struct {
		name, in string
		field    string // "" with ok
		ok       bool
	}{
		{"valid", `{"name":"a","flag":true,"count":65535,"ratio":1.5,"tags":["x"],"meta":{"a":"1","A":"2"},"any":{"x":[1,2]},"when":"2030-01-01T00:00:00Z","in":{"n":-128},"list":[{"n":1}],"Plain":"p"}`, "", true},
		{"null fields", `{"when":null,"tags":null,"meta":null,"any":null}`, "", true},
		{"duplicate", `{"flag":true,"flag":false}`, `"flag"`, false},
		{"duplicate, other spelling", `{"flag":true,"FLAG":false}`, `"FLAG"`, false},
		{"duplicate in a map", `{"meta":{"a":"1","a":"2"}}`, `"meta.a"`, false},
		{"duplicate in an array element", `{"list":[{"n":1},{"n":1,"n":2}]}`, `"list[1].n"`, false},
		{"duplicate in an untyped value", `{"any":{"x":1,"x":2}}`, `"any.x"`, false},
		{"duplicate inside a custom type", `{"when":{"a":1,"a":2}}`, `"when.a"`, false},
		{"unknown field", `{"nmae":"a"}`, `"nmae"`, false},
		{"case-insensitive match", `{"Name":"a"}`, `did you mean "name"`, false},
		{"ignored field", `{"Skip":"a"}`, `"Skip"`, false},
		{"unknown nested", `{"in":{"m":1}}`, `"in.m"`, false},
		{"int8 overflow", `{"in":{"n":128}}`, `"in.n"`, false},
		{"uint16 overflow", `{"count":65536}`, `"count"`, false},
		{"negative uint", `{"count":-1}`, `"count"`, false},
		{"fraction for an integer", `{"count":1.5}`, `"count"`, false},
		{"float32 overflow", `{"ratio":1e39}`, `"ratio"`, false},
		{"number beyond float64", `{"any":1e400}`, `"any"`, false},
		{"wrong type", `{"flag":"yes"}`, `"flag"`, false},
		{"bad time", `{"when":"tomorrow"}`, `"when"`, false},
		{"invalid UTF-8", "{\"name\":\"\xff\"}", "UTF-8", false},
		{"trailing value", `{"name":"a"} {}`, "more than one", false},
		{"truncated", `{"name":"a"`, "", false},
		{"not JSON", `{not json`, "", false},
		{"empty", ``, "", false},
		{"nested too deep", `{"any":` + strings.Repeat("[", schema.MaxDepth+1) + strings.Repeat("]", schema.MaxDepth+1) + `}`, "nested deeper", false},
		{"nested at the limit", `{"any":` + strings.Repeat("[", schema.MaxDepth) + strings.Repeat("]", schema.MaxDepth) + `}`, "", true},
	} {
		var d doc
		err := schema.Unmarshal([]byte(tc.in), &d)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *schema.FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %v (%T), want a *FieldError", tc.name, err, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %q does not name %s", tc.name, err, tc.field)
		}
	}
}

// TestUnmarshalDecodesLikeEncodingJSON: an accepted document decodes to the
// same value json.Unmarshal gives.
func TestUnmarshalDecodesLikeEncodingJSON(t *testing.T) {
	t.Parallel()
	var k schema.APIKey
	if err := schema.Unmarshal([]byte(`{"key_id":"k1","enabled":true,"expires":"2030-01-02T03:04:05Z","permissions":["read"],"meta":{"team":"a"}}`), &k); err != nil {
		t.Fatal(err)
	}
	if k.KeyID != "k1" || !k.Enabled || k.Expires == nil || k.Expires.Year() != 2030 || len(k.Permissions) != 1 || k.Meta["team"] != "a" {
		t.Fatalf("decoded %+v", k)
	}
	if err := schema.Unmarshal([]byte(`{}`), k); err == nil {
		t.Fatal("Unmarshal into a non-pointer succeeded")
	}
}

func TestParseRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		field string // "" = valid
	}{
		{`{"deployment_id":"d","upstreams":["http://127.0.0.1:1","https://a.internal/"],"require_key":true,"keyspace":"ks"}`, ""},
		{`{"upstreams":["http://x"]}`, ""},
		{`{"upstreams":[]}`, `"upstreams"`},
		{`{}`, `"upstreams"`},
		{`null`, `"upstreams"`},
		{`{"upstreams":["ftp://x"]}`, `"upstreams[0]"`},
		{`{"upstreams":["http://a","http://x/path"]}`, `"upstreams[1]"`},
		{`{"upstreams":["http://x?q=1"]}`, `"upstreams[0]"`},
		{`{"upstreams":["http://x#f"]}`, `"upstreams[0]"`},
		{`{"upstreams":["http://u:p@x"]}`, `"upstreams[0]"`},
		{`{"upstreams":["http://x"],"require_key":true}`, `"keyspace"`},
		{`{"upstreams":["http://x"],"require_key":true,"keyspace":"a` + strings.Repeat("b", 300) + `"}`, `"keyspace"`},
		{`{"upstreams":["http://x"],"require_key":true,"keyspace":"ks","require_key":false}`, `"require_key"`},
		{`{"upstreams":["http://x"],"upstream":"http://y"}`, `"upstream"`},
		{`{"upstreams":"http://x"}`, `"upstreams"`},
		{`{"upstreams":["http://x"],"require_key":"true","keyspace":"ks"}`, `"require_key"`},
		{`{not json`, "bad JSON"},
	} {
		_, urls, err := schema.ParseRoute([]byte(tc.in))
		if tc.field == "" {
			if err != nil || len(urls) == 0 {
				t.Errorf("ParseRoute(%s) = %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("ParseRoute(%s) = %v, want an error naming %s", tc.in, err, tc.field)
		}
	}
}

func TestParseAPIKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		field string
	}{
		{`{"key_id":"k","enabled":true}`, ""},
		{`{"enabled":true}`, `"key_id"`},
		{`{"key_id":"k","enabled":true,"enabled":false}`, `"enabled"`},
		{`{"key_id":"k","Enabled":true}`, `"Enabled"`},
		{`{"key_id":"k","expires":"soon"}`, `"expires"`},
		{`{"key_id":"k","meta":{"a":1}}`, `"meta.a"`},
		{`{"key_id":"k","permissions":"read"}`, `"permissions"`},
	} {
		_, err := schema.ParseAPIKey([]byte(tc.in))
		if tc.field == "" {
			if err != nil {
				t.Errorf("ParseAPIKey(%s) = %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("ParseAPIKey(%s) = %v, want an error naming %s", tc.in, err, tc.field)
		}
	}
}

// TestRegistry: Builtin checks routes and keys (values and key shapes) and
// passes other namespaces; registered validators run; every refusal wraps
// ErrInvalid and record.ErrInvalid; tombstones pass; a panic is an error.
func TestRegistry(t *testing.T) {
	t.Parallel()
	hash := strings.Repeat("ab", 32)
	route := []byte(`{"upstreams":["http://127.0.0.1:1"]}`)
	key := []byte(`{"key_id":"k","enabled":true}`)
	r := schema.Builtin()
	type blob struct {
		Size int32 `json:"size"`
	}
	if err := r.Register("blobs", schema.JSON(func(_ string, b *blob) error {
		if b.Size < 0 {
			return &schema.FieldError{Field: "size", Reason: "negative"}
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("boom", schema.ValidatorFunc(func(string, []byte) error { panic("validator bug") })); err != nil {
		t.Fatal(err)
	}
	if err := r.Register("Bad NS", schema.JSON[blob](nil)); err == nil {
		t.Fatal("registered an invalid namespace")
	}
	for _, tc := range []struct {
		ns, key string
		value   []byte
		want    string // "" = valid
	}{
		{"routes", "a.example.com", route, ""},
		{"routes", "A.example.com", route, "key"},
		{"routes", "a.example.com.", route, "key"},
		{"routes", "a.example.com", []byte(`{not json`), "bad JSON"},
		{"routes", "a.example.com", []byte(`{"upstreams":[]}`), `"upstreams"`},
		{"keys", "ks/" + hash, key, ""},
		{"keys", "ks/abc", key, "key"},
		{"keys", "/" + hash, key, "key"},
		{"keys", "ks/" + strings.ToUpper(hash), key, "key"},
		{"keys", "ks/" + hash, []byte(`{"enabled":true}`), `"key_id"`},
		{"other", "x", []byte(`{not json`), ""},
		{"blobs", "x", []byte(`{"size":1}`), ""},
		{"blobs", "x", []byte(`{"size":-1}`), `"size"`},
		{"blobs", "x", []byte(`{"size":1e10}`), `"size"`},
		{"blobs", "x", []byte(`{"size":1,"size":2}`), `"size"`},
		{"boom", "x", []byte(`{}`), "panicked"},
	} {
		err := r.Check(tc.ns, tc.key, tc.value)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Check(%s/%s, %s) = %v", tc.ns, tc.key, tc.value, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.ns+"/"+tc.key) {
			t.Errorf("Check(%s/%s, %s) = %v, want an error naming %s/%s and %s", tc.ns, tc.key, tc.value, err, tc.ns, tc.key, tc.want)
		}
		if !errors.Is(err, schema.ErrInvalid) || !errors.Is(err, record.ErrInvalid) {
			t.Errorf("Check(%s/%s): %v does not wrap schema.ErrInvalid and record.ErrInvalid", tc.ns, tc.key, err)
		}
	}
	if err := r.CheckRecord(record.Record{Namespace: "routes", Key: "a", Tombstone: true}); err != nil {
		t.Errorf("tombstone refused: %v", err)
	}
	if !r.Has("blobs") || r.Has("other") {
		t.Error("Has is wrong")
	}
	if err := r.Register("blobs", nil); err != nil || r.Has("blobs") {
		t.Errorf("Register(nil) = %v, still has it: %v", err, r.Has("blobs"))
	}
	if err := schema.NewRegistry().Check("routes", "a", []byte(`{not json`)); err != nil {
		t.Errorf("empty registry refused: %v", err)
	}
}

// TestErrorsHideSecrets: a field name that could carry a credential (it
// holds ':' or '@') is not shown.
func TestErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"upstreams":["http://x"],"user:SECRET@":1}`,
		`{"upstreams":["http://x"],"user:SECRET@":1,"user:SECRET@":1}`,
	} {
		_, _, err := schema.ParseRoute([]byte(in))
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("ParseRoute(%s) = %v, want an error not showing the name", in, err)
		}
	}
	var k schema.APIKey
	err := schema.Unmarshal([]byte(`{"key_id":"k","meta":{"tok_SECRET":"a","tok_SECRET":"b"}}`), &k)
	if err == nil || !strings.Contains(err.Error(), "meta.tok_SECRET") {
		t.Errorf("a safe name is shown: %v", err)
	}
}
