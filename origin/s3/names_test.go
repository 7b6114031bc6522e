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
		name := s.logName(c)
		if len(name) > 1024 {
			t.Fatalf("logName is %d bytes, over S3's 1024", len(name))
		}
		if !strings.HasPrefix(name, "p/log/") {
			t.Fatalf("logName = %q", name)
		}
		got, ok := parseLogName(strings.TrimPrefix(name, "p/"))
		if !ok || !reflect.DeepEqual(got, c) {
			t.Fatalf("parseLogName(%q) = %+v, %v; want %+v", name, got, ok, c)
		}
		if after := s.logStartAfter(c.Version); !(after > name) || !(after < s.logName(record.Change{Namespace: "a", Key: "a", Version: c.Version + 1})) {
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
		if c, ok := parseLogName(bad); ok {
			t.Errorf("parseLogName(%q) = %+v, want rejected", bad, c)
		}
	}
	if !utf8.ValidString(s.logStartAfter(5)) {
		t.Error("StartAfter is not UTF-8")
	}
}
