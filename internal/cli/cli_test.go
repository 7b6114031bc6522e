package cli

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newFS() (*flag.FlagSet, *string, *time.Duration, *bool, *StringList) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", "config file")
	listen := fs.String("listen", ":8080", "address")
	ttl := fs.Duration("fresh-ttl", 10*time.Second, "ttl")
	dev := fs.Bool("insecure", false, "insecure")
	var seeds StringList
	fs.Var(&seeds, "seeds", "seeds")
	return fs, listen, ttl, dev, &seeds
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.json")
	os.WriteFile(cfg, []byte(`{"listen": ":1", "fresh-ttl": "3s", "insecure": true, "seeds": ["a:1", "b:2"]}`), 0o644)
	t.Setenv("DP_FRESH_TTL", "5s")
	fs, listen, ttl, dev, seeds := newFS()
	if err := Parse(fs, []string{"-config", cfg, "-listen", ":2"}, "DP_"); err != nil {
		t.Fatal(err)
	}
	if *listen != ":2" || *ttl != 5*time.Second || !*dev || seeds.String() != "a:1,b:2" {
		t.Fatalf("flag > env > file: listen=%s ttl=%s insecure=%v seeds=%s", *listen, *ttl, *dev, seeds)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file, env, want string
	}{
		{"bad env", "", "DP_FRESH_TTL=banana", "DP_FRESH_TTL"},
		{"unknown file key", `{"nope": 1}`, "", `unknown setting "nope"`},
		{"bad file value", `{"fresh-ttl": "soon"}`, "", `"fresh-ttl"`},
		{"not json", `listen = 1`, "", "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{}
			if tc.file != "" {
				p := filepath.Join(dir, tc.name+".json")
				os.WriteFile(p, []byte(tc.file), 0o644)
				args = append(args, "-config", p)
			}
			if tc.env != "" {
				k, v, _ := strings.Cut(tc.env, "=")
				t.Setenv(k, v)
			}
			fs, _, _, _, _ := newFS()
			err := Parse(fs, args, "DP_")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestUsageListsEnv(t *testing.T) {
	fs, _, _, _, _ := newFS()
	var buf bytes.Buffer
	Usage(fs, &buf, "usage: t [flags]", "DP_")()
	for _, want := range []string{"usage: t", "-fresh-ttl", "$DP_FRESH_TTL", "(default 10s)"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("usage lacks %q:\n%s", want, buf.String())
		}
	}
}
