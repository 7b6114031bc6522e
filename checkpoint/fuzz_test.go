package checkpoint_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/record"
)

func FuzzUnmarshal(f *testing.F) {
	f.Add([]byte("DK\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := checkpoint.Unmarshal(b)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not wrap record.ErrCorrupt", err)
			}
			return
		}
		out, err := c.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("a decoded checkpoint re-encodes differently (err %v)", err)
		}
	})
}

func FuzzUnmarshalProof(f *testing.F) {
	f.Add([]byte("DP\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := checkpoint.UnmarshalProof(b)
		if err != nil {
			if !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("error %v does not wrap record.ErrCorrupt", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("a decoded proof re-encodes differently (err %v)", err)
		}
	})
}

// TestSeedCorpora: the fuzz targets start from valid encodings kept in
// testdata/fuzz (written by TestWriteSeeds with -write-seeds... see
// seeds_test.go).
func TestSeedCorpora(t *testing.T) {
	for _, target := range []string{"FuzzUnmarshal", "FuzzUnmarshalProof"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(entries) < 2 {
			t.Errorf("%s: seed corpus missing or thin: %v", target, err)
		}
	}
}
