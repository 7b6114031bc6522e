// Package cli fills a flag.FlagSet from three sources, in order of
// precedence: command-line flags, environment variables, and an optional JSON
// config file. Every subcommand of cmd/dataplane uses it, so configuration
// works the same everywhere and a bad value is always an error naming the
// setting and where it came from.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Parse parses args into fs. A flag not given on the command line is taken
// from the environment variable envPrefix + upper-cased name with '-' as '_'
// (e.g. DATAPLANE_LISTEN for -listen), else from the JSON object in the file
// named by -config (if fs defines a "config" flag and it is set), else keeps
// its default. Unknown keys in the config file are an error.
func Parse(fs *flag.FlagSet, args []string, envPrefix string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := EnvName(envPrefix, f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s=%q: %w", env, Redact(f.Name, v), err))
			}
			set[f.Name] = true
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	cf := fs.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return applyConfig(fs, path, b, set)
}

// applyConfig sets the flags of fs named by the keys of the JSON object b
// (read from path), except those in set. Unknown keys, the key "config",
// values that are neither string, number, bool nor a list of those, and
// values a flag refuses are errors naming the file and the setting.
func applyConfig(fs *flag.FlagSet, path string, b []byte, set map[string]bool) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: not a JSON object: %w", path, err)
	}
	if m == nil { // the file says null
		return fmt.Errorf("config file %s: not a JSON object: null", path)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (see --help)", path, k))
			continue
		}
		if set[k] {
			continue
		}
		var s string
		switch v := m[k].(type) {
		case string:
			s = v
		case bool, float64:
			s = fmt.Sprint(v)
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				switch p.(type) {
				case string, bool, float64:
					parts[i] = fmt.Sprint(p)
				default:
					errs = append(errs, fmt.Errorf("config file %s: setting %q: element %d is a %s, want a string, number or bool", path, k, i, jsonType(p)))
				}
			}
			s = strings.Join(parts, ",")
		default:
			// The value itself is not shown: it may be a secret.
			errs = append(errs, fmt.Errorf("config file %s: setting %q: a %s, want a string, number, bool or list", path, k, jsonType(v)))
			continue
		}
		if err := fs.Set(k, s); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: setting %q=%q: %w", path, k, Redact(k, s), err))
		}
	}
	return errors.Join(errs...)
}

// jsonType names the JSON type of a value decoded into an any.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "JSON object"
	case []any:
		return "list"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

// Redact returns value, or "<redacted>" when the setting name says it holds
// a secret (a token, key, secret or password), so that an error about it
// can be shown and logged.
func Redact(name, value string) string {
	n := strings.ToLower(name)
	for _, w := range []string{"token", "key", "secret", "password"} {
		if strings.Contains(n, w) {
			return "<redacted>"
		}
	}
	return value
}

// EnvName is the environment variable that sets flag name.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Usage returns a flag.FlagSet Usage func that prints a synopsis, the flags
// with their environment variables, and a closing note.
func Usage(fs *flag.FlagSet, w io.Writer, synopsis, envPrefix string) func() {
	return func() {
		fmt.Fprintf(w, "%s\n\nFlags (each also settable as an environment variable, or as a key in the -config JSON file):\n", strings.TrimSpace(synopsis))
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s %s\n    \t%s", f.Name, name, strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, " [$%s]\n", EnvName(envPrefix, f.Name))
		})
	}
}

// StringList is a flag.Value for a comma-separated list, repeatable.
type StringList []string

// String implements flag.Value.
func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value: appends the comma-separated parts of v.
func (l *StringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}
