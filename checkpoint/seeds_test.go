package checkpoint_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dataplane/dataplane/checkpoint"
)

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// TestWriteSeeds builds the seed corpora from valid encodings and checks
// that each decodes as its name says (a valid one does, a truncated one is
// refused). With -write-seeds it writes them to testdata/fuzz; without, to
// a temporary directory, so the writer is tested on every run and never
// skipped.
func TestWriteSeeds(t *testing.T) {
	root := t.TempDir()
	if *writeSeeds {
		root = filepath.Join("testdata", "fuzz")
	}
	_, _, _, proof, _ := snapshotCase(t, 3)
	cb, err := proof.Checkpoint.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	unsigned := *proof.Checkpoint
	unsigned.Signed = false
	ub, _ := unsigned.Marshal()
	pb, err := proof.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write := func(target, name string, b []byte) {
		dir := filepath.Join(root, target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzUnmarshal", "signed", cb)
	write("FuzzUnmarshal", "unsigned", ub)
	write("FuzzUnmarshal", "truncated", cb[:70])
	write("FuzzUnmarshalProof", "proof", pb)
	write("FuzzUnmarshalProof", "no-above", pb[:len(pb)-len(pb)+4+2+len(cb)])
	write("FuzzUnmarshalProof", "truncated", pb[:len(pb)-3])

	for _, c := range []struct {
		name  string
		b     []byte
		proof bool
		valid bool
	}{
		{"signed", cb, false, true},
		{"unsigned", ub, false, true},
		{"truncated", cb[:70], false, false},
		{"proof", pb, true, true},
		{"proof truncated", pb[:len(pb)-3], true, false},
	} {
		var err error
		if c.proof {
			_, err = checkpoint.UnmarshalProof(c.b)
		} else {
			_, err = checkpoint.Unmarshal(c.b)
		}
		if (err == nil) != c.valid {
			t.Errorf("seed %s: decode error %v, want valid=%v", c.name, err, c.valid)
		}
	}
}
