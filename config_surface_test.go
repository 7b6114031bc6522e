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
// what issue 22 left: 120, from 140 before (root Config with
// cache.Options, gossip.Config, follow.Config; publisher.Config;
// cachenode.Config composed with gossip.Config and follow.Config by hand;
// sentinel.ServerConfig with sentinel.Config), plus the three settings
// issue 23 added in the same session: publisher.Config.Trusted (the keys
// a publisher checks what it reads back against, every key of a
// rotation) and cachenode.Config's CheckpointTTL and ProofTTL (how long
// the tier shares one origin read of a checkpoint or proof).
func TestConfigSurface(t *testing.T) {
	const maxSurface = 123
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
