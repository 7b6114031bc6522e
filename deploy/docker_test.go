package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfile checks what the image promises: the binary is built by
// scripts/build-static.sh (which scripts/test.sh also builds and runs),
// the final stage is distroless and runs as non-root, and the default
// command is the sentinel.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := regexp.MustCompile(`(?m)^FROM\s+(\S+\s+)*?(\S+)(\s+AS\s+\S+)?\s*$`).FindAllString(df, -1)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got stages %q", stages)
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, want := range []struct{ what, re string }{
		{"final stage on distroless static", `(?m)^FROM gcr\.io/distroless/static`},
		{"non-root user", `(?m)^USER 65532:65532$`},
		{"entrypoint is the binary", `(?m)^ENTRYPOINT \["/usr/local/bin/dataplane"\]$`},
		{"default command sentinel", `(?m)^CMD \["sentinel"\]$`},
	} {
		if !regexp.MustCompile(want.re).MatchString(final) {
			t.Errorf("final stage: want %s (%s)", want.what, want.re)
		}
	}
	if !regexp.MustCompile(`(?m)scripts/build-static\.sh /out/dataplane`).MatchString(df) {
		t.Error("the binary must be built by scripts/build-static.sh")
	}
	script, err := os.ReadFile("../scripts/build-static.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version="} {
		if !strings.Contains(string(script), flag) {
			t.Errorf("scripts/build-static.sh lacks %s", flag)
		}
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".git", ".tools"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p) + `$`).Match(ignore) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}
