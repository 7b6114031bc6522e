package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishRefusesMalformedValues: `publish put` and `publish import`
// refuse a route that breaks its schema, naming the field, and write
// nothing: get still shows the last good route.
func TestPublishRefusesMalformedValues(t *testing.T) {
	origin := t.TempDir()
	publish := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"publish", "-origin", origin}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	const good = `{"upstreams":["http://127.0.0.1:1"],"require_key":true,"keyspace":"ks"}`
	if code, _, stderr := publish("put", "routes", "a.example.com", good); code != 0 {
		t.Fatalf("put good route: exit %d: %s", code, stderr)
	}
	for _, tc := range []struct{ value, field string }{
		{`{"upstreams":["http://127.0.0.1:1"],"require_key":true,"keyspace":"ks","require_key":false}`, `"require_key"`},
		{`{not json`, "bad JSON"},
		{`{"upstreams":["http://127.0.0.1:1"],"keyspaces":"ks"}`, `"keyspaces"`},
	} {
		if code, _, stderr := publish("put", "routes", "a.example.com", tc.value); code != 1 || !strings.Contains(stderr, tc.field) {
			t.Errorf("put %s: exit %d, stderr %q; want exit 1 naming %s", tc.value, code, stderr, tc.field)
		}
	}
	lines := `{"namespace":"routes","key":"a.example.com","value":{"upstreams":[]}}` + "\n" +
		`{"namespace":"routes","key":"b.example.com","value":` + good + "}\n"
	file := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := publish("import", file)
	if out := stdout + stderr; !strings.Contains(out, "line 1") || !strings.Contains(out, `"upstreams"`) {
		t.Errorf("import: exit %d, output %q; want line 1 rejected naming \"upstreams\"", code, out)
	}
	if code, out, stderr := publish("get", "routes", "a.example.com"); code != 0 || strings.TrimSpace(out) != good {
		t.Fatalf("get after refused writes: exit %d %q %s; want the last good route", code, out, stderr)
	}
	if code, out, _ := publish("get", "routes", "b.example.com"); code != 0 || strings.TrimSpace(out) != good {
		t.Fatalf("the good import line was not written: exit %d %q", code, out)
	}
}
