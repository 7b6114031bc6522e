package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit checks the unit's hardening and that every instance it
// documents has an example config in deploy/config (TestExampleConfigs in
// the dataplane module loads those into the command's flags).
func TestSystemdUnit(t *testing.T) {
	f, err := os.Open("systemd/dataplane@.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("bad line %q", l)
			}
			set[section+"."+k] = append(set[section+"."+k], v)
		}
	}
	for _, tc := range []struct{ key, want string }{
		{"Service.DynamicUser", "yes"},
		{"Service.NoNewPrivileges", "yes"},
		{"Service.ProtectSystem", "strict"},
		{"Service.ProtectHome", "yes"},
		{"Service.PrivateTmp", "yes"},
		{"Service.PrivateDevices", "yes"},
		{"Service.CapabilityBoundingSet", ""},
		{"Service.RestrictSUIDSGID", "yes"},
		{"Service.MemoryDenyWriteExecute", "yes"},
		{"Service.SystemCallArchitectures", "native"},
		{"Service.SystemCallFilter", "@system-service"},
		{"Service.StateDirectory", "dataplane/%i"},
		{"Service.Restart", "on-failure"},
		{"Install.WantedBy", "multi-user.target"},
	} {
		if vs := set[tc.key]; len(vs) == 0 || vs[0] != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, vs, tc.want)
		}
	}
	exec := set["Service.ExecStart"]
	if len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/local/bin/dataplane %i -config /etc/dataplane/%i.json") {
		t.Errorf("ExecStart = %q", exec)
	}
	for _, cmd := range []string{"sentinel", "cachenode", "publish", "sync"} {
		if _, err := os.Stat(filepath.Join("config", cmd+".json")); err != nil {
			t.Errorf("instance dataplane@%s has no example config: %v", cmd, err)
		}
	}
}
