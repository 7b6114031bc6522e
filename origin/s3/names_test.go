package s3

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dataplane/dataplane/record"
)

func TestEscapeKey(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"abc-XYZ_09", "abc-XYZ_09"},
		{".", "%2E"},
		{"..", "%2E%2E"},
		{"a/../b", "a%2F%2E%2E%2Fb"},
		{"100%", "100%25"},
		{"~x", "%7Ex"},
		{"ü", "%C3%BC"},
		{"sp ace", "sp%20ace"},
	} {
		if got := escapeKey(tc.key); got != tc.want {
			t.Errorf("escapeKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	long := escapeKey(strings.Repeat("日", record.MaxKeyLen/3))
	for i, seg := range strings.Split(long, "/") {
		if len(seg) > 255 {
			t.Errorf("segment %d of a long key is %d bytes", i, len(seg))
		}
	}
	for _, bad := range []string{"", "%2e", "%4A", "a%2", "a%zz", "a~b", "a/b", "a~/b", "%2E~/", strings.Repeat("k", segmentLen+1)} {
		if k, ok := unescapeKey(bad); ok {
			t.Errorf("unescapeKey(%q) = %q, accepted a non-canonical name", bad, k)
		}
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"a", ".", "../x", "%2F", "日本語", strings.Repeat("日", 85), strings.Repeat("k", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		esc := escapeKey(key)
		if key == "" {
			return
		}
		for _, seg := range strings.Split(esc, "/") {
			if len(seg) > segmentLen+1 || seg == "." || seg == ".." {
				t.Fatalf("escapeKey(%q): bad segment %q", key, seg)
			}
		}
		for i := 0; i < len(esc); i++ {
			if c := esc[i]; !keepByte(c) && c != '%' && c != '~' && c != '/' {
				t.Fatalf("escapeKey(%q) = %q holds %q", key, esc, c)
			}
		}
		got, ok := unescapeKey(esc)
		if !ok || got != key {
			t.Fatalf("unescapeKey(escapeKey(%q)) = %q, %v", key, got, ok)
		}
		// Any name that decodes must be the escape of what it decodes to.
		if k, ok := unescapeKey(key); ok && escapeKey(k) != key {
			t.Fatalf("unescapeKey(%q) = %q is not canonical", key, k)
		}
	})
}

func TestLogNames(t *testing.T) {
	s := &Store{prefix: "p/"}
	for _, c := range []record.Change{
		{Namespace: "routes", Key: "a.example.com", Version: 1},
		{Namespace: "keys", Key: "ks/abc", Version: 1<<63 + 5, Tombstone: true},
		{Namespace: "x", Key: strings.Repeat("日", 85), Version: 0xabc},
		{Namespace: "routes", Key: "signed/a b", Version: 7, Seal: &record.Seal{KeyID: [8]byte{1, 2}, Digest: [32]byte{3}, Sig: [64]byte{4, 0xff}}},
		{Namespace: "keys", Key: strings.Repeat("%", 256), Version: 9, Tombstone: true, Seal: &record.Seal{Sig: [64]byte{0xfe}}},
	} {
		name, _ := s.logName(c)
		if len(name) > 1024 {
			t.Fatalf("logName is %d bytes, over S3's 1024", len(name))
		}
		if !strings.HasPrefix(name, "p/log/") {
			t.Fatalf("logName = %q", name)
		}
		got, hashed, ok := parseLogName(strings.TrimPrefix(name, "p/"))
		if !ok || hashed || !reflect.DeepEqual(got, c) {
			t.Fatalf("parseLogName(%q) = %+v, %v; want %+v", name, got, ok, c)
		}
		if after := s.logStartAfter(c.Version); !(after > name) || !(after < first(s.logName(record.Change{Namespace: "a", Key: "a", Version: c.Version + 1}))) {
			t.Fatalf("logStartAfter(%s) = %q does not sit between version %s and the next", c.Version, after, c.Version)
		}
		if before := s.logStartAfter(c.Version - 1); !(before < name) {
			t.Fatalf("logStartAfter(%s) = %q is not below %q", c.Version-1, before, name)
		}
	}
	for _, bad := range []string{
		"log/", "log/0000000000000001", "log/000000000000000g/ns/p/k", "log/0000000000000001/NS/p/k",
		"log/0000000000000001/ns/x/k", "log/0000000000000001/ns/p/", "log/0000000000000000/ns/p/k",
		"log/0000000000000001/ns/p/a%2e", "log/00000000000000AB/ns/p/k", "log/0000000000000001/ns/p/%0A",
	} {
		if c, _, ok := parseLogName(bad); ok {
			t.Errorf("parseLogName(%q) = %+v, want rejected", bad, c)
		}
	}
	if !utf8.ValidString(s.logStartAfter(5)) {
		t.Error("StartAfter is not UTF-8")
	}
}

func first[T, U any](t T, _ U) T { return t }

// TestNamesFitS3 checks every object name the store produces against S3's
// 1024-byte limit at the documented extremes: the longest prefix Config
// accepts, a 64-byte namespace and a 256-byte key that escapes fully,
// signed; and that a name that fits keeps its escaped form (so objects
// written before names were hashed keep theirs).
func TestNamesFitS3(t *testing.T) {
	ns := strings.Repeat("n", record.MaxNamespaceLen)
	seal := &record.Seal{Sig: [64]byte{1}}
	for _, prefix := range []string{"", "tenant-a/", strings.Repeat("p", 255) + "/", strings.Repeat("日", 85) + "/"} {
		cfg := Config{Bucket: "b", Prefix: prefix}
		if err := cfg.validate(); err != nil {
			t.Fatalf("prefix of %d bytes: %v", len(prefix), err)
		}
		s := &Store{prefix: prefix}
		for _, key := range []string{"a", strings.Repeat("%", record.MaxKeyLen), strings.Repeat("日", record.MaxKeyLen/3), strings.Repeat("k", record.MaxKeyLen)} {
			for _, c := range []record.Change{
				{Namespace: ns, Key: key, Version: 1<<64 - 1, Seal: seal},
				{Namespace: ns, Key: key, Version: 1, Tombstone: true},
			} {
				if err := s.checkNames(c); err != nil {
					t.Errorf("prefix of %d bytes, key of %d: %v", len(prefix), len(key), err)
				}
				for _, part := range []string{s.partName(ns, ""), s.partName(ns, strings.Repeat("x", 64)), s.prefix + horizonName} {
					if len(part) > maxNameLen {
						t.Errorf("snapshot or horizon name of %d bytes", len(part))
					}
				}
				name, hashed := s.logName(c)
				pn, phashed := s.pendingName(c)
				if hashed != phashed {
					t.Errorf("log name %q and pending name %q disagree on hashing", name, pn)
				}
				if short, _ := (&Store{}).logName(c); len(short) <= maxNameLen-len(prefix)-4 && hashed {
					t.Errorf("a name that fits was hashed: %q", name)
				}
				got, h, ok := parseLogName(strings.TrimPrefix(name, prefix))
				if !ok || h != hashed || (!hashed && got.Key != key) {
					t.Errorf("parseLogName(%q) = %+v, hashed %v, ok %v", name, got, h, ok)
				}
			}
		}
	}
}

// FuzzParseLogName: a change object name that parses is the one the store
// gives that change (no two names decode to one change), or a hashed one
// whose key the object holds; hashed names are recognised only in the
// exact form keyPart makes.
func FuzzParseLogName(f *testing.F) {
	s := &Store{prefix: strings.Repeat("p", 255) + "/"}
	seal := &record.Seal{Sig: [64]byte{1}}
	for _, c := range []record.Change{
		{Namespace: "routes", Key: "a.example.com", Version: 1},
		{Namespace: strings.Repeat("n", 64), Key: strings.Repeat("%", 256), Version: 9, Seal: seal},
		{Namespace: "keys", Key: strings.Repeat("日", 85), Version: 3, Tombstone: true, Seal: seal},
	} {
		name, _ := s.logName(c)
		f.Add(strings.TrimPrefix(name, s.prefix))
	}
	f.Add("log/0000000000000001/ns/p/ab~" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, rel string) {
		c, hashed, ok := parseLogName(rel)
		if !ok {
			return
		}
		if hashed {
			i := strings.LastIndexByte(rel, '~')
			if c.Key != "" || !isHashedKey(rel[strings.LastIndexByte(rel[:i], '/')+1:]) {
				t.Fatalf("parseLogName(%q) = %+v: hashed, but not keyPart's form", rel, c)
			}
			return
		}
		// (A name too long for S3 that the store would now hash still
		// parses: written before names were hashed, by a server that
		// did not enforce the limit.)
		if name, h := (&Store{}).logName(c); name != rel && !h {
			t.Fatalf("parseLogName(%q) = %+v, whose name is %q", rel, c, name)
		}
	})
}
