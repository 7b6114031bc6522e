package checkpoint_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// TestWriteSeeds rewrites the seed corpora from valid encodings when run
// with -write-seeds.
func TestWriteSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to rewrite testdata/fuzz")
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
		dir := filepath.Join("testdata", "fuzz", target)
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
}
