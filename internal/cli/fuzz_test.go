package cli

import (
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// fuzzFlags is a flag set with one flag of each kind the commands use.
func fuzzFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("fuzz", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", "config file")
	fs.String("listen", ":8080", "address")
	fs.String("admin-token", "", "a secret")
	fs.Duration("fresh-ttl", 10*time.Second, "ttl")
	fs.Bool("insecure", false, "insecure")
	fs.Int64("cache-bytes", 1, "bytes")
	fs.Int("batch-size", 1, "rows")
	var seeds StringList
	fs.Var(&seeds, "seeds", "seeds")
	var keys StringList
	fs.Var(&keys, "gossip-key", "keys")
	return fs
}

// FuzzConfigFile applies arbitrary bytes as a -config file. It never
// panics; it accepts only a JSON object whose keys are all known settings;
// and an error never shows the value of a secret setting.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		`{"listen": ":1", "fresh-ttl": "3s", "insecure": true, "seeds": ["a:1", "b:2"], "cache-bytes": 1024}`,
		`{"admin-token": "tok_SECRET", "gossip-key": ["k1", "k2"]}`,
		`{"admin-token": {"nested": "tok_SECRET"}}`,
		`{"admin-token": ["tok_SECRET", {"x": 1}]}`,
		`{"fresh-ttl": "soon"}`,
		`{"batch-size": 1.5}`,
		`{"insecure": "maybe"}`,
		`{"nope": 1}`,
		`{"config": "other.json"}`,
		`null`,
		`[]`,
		`{"listen": null}`,
		`{"seeds": [null, true, 3]}`,
		"{\"listen\": \"\\u0000\"}",
		`{`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := fuzzFlags()
		err := applyConfig(fs, "fuzz.json", b, map[string]bool{})
		var m map[string]json.RawMessage
		isObject := json.Unmarshal(b, &m) == nil && m != nil
		if err == nil {
			if !isObject {
				t.Fatalf("accepted %q, which is not a JSON object", b)
			}
			for k := range m {
				if fs.Lookup(k) == nil || k == "config" {
					t.Fatalf("accepted the unknown setting %q", k)
				}
			}
			return
		}
		if !strings.Contains(err.Error(), "fuzz.json") {
			t.Fatalf("error %q does not name the file", err)
		}
		var tok any
		if isObject && json.Unmarshal(m["admin-token"], &tok) == nil {
			// An error may name an unknown setting, which is input too:
			// a token that also occurs in a setting's name proves nothing.
			inName := false
			if s, ok := tok.(string); ok {
				for k := range m {
					inName = inName || k != "admin-token" && strings.Contains(k, s)
				}
			}
			if s, ok := tok.(string); ok && len(s) >= 4 && !inName && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q shows the admin token %q", err, s)
			}
		}
	})
}

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, value, want string }{
		{"listen", ":8080", ":8080"},
		{"admin-token", "abc", "<redacted>"},
		{"write-token", "abc", "<redacted>"},
		{"gossip-key", "abc", "<redacted>"},
		{"database-password", "abc", "<redacted>"},
		{"client-secret", "abc", "<redacted>"},
	} {
		if got := Redact(tc.name, tc.value); got != tc.want {
			t.Errorf("Redact(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
	}
}

// TestConfigErrorsHideSecrets: a malformed secret setting is reported by name,
// never by value.
func TestConfigErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, file string }{
		{"object", `{"admin-token": {"v": "tok_SECRET"}}`},
		{"list of objects", `{"gossip-key": [{"v": "tok_SECRET"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := applyConfig(fuzzFlags(), "c.json", []byte(tc.file), map[string]bool{})
			if err == nil || strings.Contains(err.Error(), "tok_SECRET") || !strings.Contains(err.Error(), "c.json") {
				t.Fatalf("error %v: want one naming the file and setting, without the value", err)
			}
		})
	}
}
