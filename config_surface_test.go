package dataplane_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/sentinel"
)

// roleConfigs are the configurations a user sets, one per role.
var roleConfigs = map[string]any{
	"node":       dataplane.Config{},
	"publisher":  publisher.Config{},
	"cache node": cachenode.Config{},
	"sentinel":   sentinel.ServerConfig{},
}

// configFields appends the exported fields of t (a struct, or a pointer,
// slice or map of one) as "pkg.Type.Field", and those of every config
// struct of this module they hold, each type once (seen).
func configFields(t reflect.Type, seen map[reflect.Type]bool, out []string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || !strings.HasPrefix(t.PkgPath(), "github.com/dataplane/dataplane") || seen[t] {
		return out
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if !f.Anonymous {
			out = append(out, t.String()+"."+f.Name)
		}
		out = configFields(f.Type, seen, out)
	}
	return out
}

// TestConfigSurface: the configuration a user of each role sets states
// each setting once (no field name twice in a role's configs), and the
// surface, counted as fields across the roles' configs (each config type
// once, nested config types of this module included), does not grow past
// what issue 22 left: 85, from 140 before (root Config with
// cache.Options, gossip.Config, follow.Config; publisher.Config;
// cachenode.Config composed with gossip.Config and follow.Config by hand;
// sentinel.ServerConfig with sentinel.Config), 39% fewer. What went:
// settings derived from another (Timing.MaxFutureSkew from ClockSkew, the
// publisher's checkpoint, repair and notify timing from Timing, the cache
// node's part TTLs from Timing, the sentinel's miss burst from its rate and
// its gatherer from its registerer), two fields that said one thing
// (gossip's address and port, the sentinel's address and listener), and
// tuning constants nobody set outside the presets and tests (gossip's
// protocol tuning, held by the presets; snapshot layout, HTTP bounds).
func TestConfigSurface(t *testing.T) {
	const maxSurface = 85
	all := make(map[reflect.Type]bool)
	var union []string
	for role, cfg := range roleConfigs {
		fields := configFields(reflect.TypeOf(cfg), make(map[reflect.Type]bool), nil)
		byName := make(map[string][]string)
		for _, f := range fields {
			name := f[strings.LastIndex(f, ".")+1:]
			byName[name] = append(byName[name], f)
		}
		for name, fs := range byName {
			if len(fs) > 1 {
				slices.Sort(fs)
				t.Errorf("%s: %s is stated %d times: %v", role, name, len(fs), fs)
			}
		}
		union = configFields(reflect.TypeOf(cfg), all, union)
	}
	if len(union) > maxSurface {
		t.Errorf("configuration surface: %d fields across the roles' configs, want at most %d:\n%s", len(union), maxSurface, strings.Join(union, "\n"))
	}
}
