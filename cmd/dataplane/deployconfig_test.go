package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// errParsed stops a command right after its flags are parsed.
var errParsed = errors.New("flags parsed")

// TestExampleConfigs loads every example -config file under deploy/ (the
// systemd examples in deploy/config and the Kubernetes ConfigMaps' copies
// in deploy/kubernetes/config) into the flags of the command its name
// starts with, so a renamed flag or a bad value fails here, not in a
// deployment. A broken file must fail the same way.
func TestExampleConfigs(t *testing.T) {
	var files []string
	for _, dir := range []string{"../../deploy/config", "../../deploy/kubernetes/config"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no example configs in %s", dir)
		}
		files = append(files, m...)
	}
	bad := filepath.Join(t.TempDir(), "sentinel.json")
	if err := os.WriteFile(bad, []byte(`{"origin": "dir:///x", "fresh-tll": "1s"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flagsParsed = nil })
	for _, tc := range append(
		[]struct{ file, fail string }{{bad, `unknown setting "fresh-tll"`}},
		func() (out []struct{ file, fail string }) {
			for _, f := range files {
				out = append(out, struct{ file, fail string }{f, ""})
			}
			return out
		}()...) {
		t.Run(filepath.Base(filepath.Dir(tc.file))+"/"+filepath.Base(tc.file), func(t *testing.T) {
			name := strings.TrimSuffix(filepath.Base(tc.file), ".json")
			cmd, _, _ := strings.Cut(name, "-")
			if _, ok := commands[cmd]; !ok {
				t.Fatalf("%s: no command %q (files are named <command>[-variant].json)", tc.file, cmd)
			}
			var got *flag.FlagSet
			flagsParsed = func(fs *flag.FlagSet) error { got = fs; return errParsed }
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{cmd, "-config", tc.file}, &stdout, &stderr)
			if tc.fail != "" {
				if code != 2 || !strings.Contains(stderr.String(), tc.fail) {
					t.Fatalf("exit %d, want 2 and %q:\n%s", code, tc.fail, stderr.String())
				}
				return
			}
			if got == nil || !strings.Contains(stderr.String(), errParsed.Error()) {
				t.Fatalf("%s %s did not parse (exit %d):\n%s", cmd, tc.file, code, stderr.String())
			}
			if f := got.Lookup("config"); f == nil || f.Value.String() != tc.file {
				t.Fatalf("-config not taken")
			}
		})
	}
}
