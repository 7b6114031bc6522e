package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dataplane/dataplane/origin/dir"
)

// TestKeygenAndSignedPublish: keygen writes a key pair (the private key
// 0600); publish -signing-key signs what it writes, which a Verifier built
// from -trusted-keys (list or file:) accepts; the key never shows in
// output; a bad key fails by name without quoting it.
func TestKeygenAndSignedPublish(t *testing.T) {
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "pub")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"keygen", "-out", prefix}, &stdout, &stderr); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr.String())
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v, mode %v", err, fi.Mode())
	}
	priv, _ := os.ReadFile(prefix + ".key")
	pubText, _ := os.ReadFile(prefix + ".pub")
	if strings.Contains(stdout.String(), strings.TrimSpace(string(priv))) {
		t.Fatal("keygen -out printed the private key")
	}

	origin := filepath.Join(tmp, "origin")
	stdout.Reset()
	stderr.Reset()
	args := []string{"publish", "-origin", "dir://" + origin, "-signing-key", prefix + ".key", "-log-level", "debug", "put", "cfg", "k", "v"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("publish: exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), strings.TrimSpace(string(priv))) {
		t.Fatal("publish printed the signing key")
	}
	s, err := dir.Open(origin)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(context.Background(), "cfg", "k", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, list := range []string{strings.TrimSpace(string(pubText)), "file:" + prefix + ".pub"} {
		nf := nodeFlags{trusted: list}
		v, err := nf.verifier()
		if err != nil || v == nil {
			t.Fatalf("-trusted-keys %q: %v", list, err)
		}
		if err := v.VerifyRecord(rec); err != nil {
			t.Fatalf("published record does not verify: %v", err)
		}
	}
	if v, err := (&nodeFlags{}).verifier(); v != nil || err != nil {
		t.Fatalf("no -trusted-keys: %v, %v; want signing off", v, err)
	}

	bad := "base64:" + strings.Repeat("A", 10)
	stderr.Reset()
	args = []string{"publish", "-origin", "dir://" + origin, "-signing-key", bad, "put", "cfg", "k", "v"}
	if code := run(context.Background(), args, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "-signing-key") || strings.Contains(stderr.String(), strings.Repeat("A", 10)) {
		t.Fatalf("bad key: exit %d: %s", code, stderr.String())
	}
}
