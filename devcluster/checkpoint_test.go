package devcluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/devcluster"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/sign"
	"github.com/dataplane/dataplane/statehash"
)

// TestDevIssuesCheckpoints: the dev cluster's publisher holds the signing
// key, so it issues a checkpoint of each built-in namespace into the
// origin, verifiable with the cluster's public key and matching what the
// origin holds.
func TestDevIssuesCheckpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Config{DataDir: t.TempDir(), AnyPorts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keyFile, err := os.ReadFile(c.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := sign.ParsePrivateKey(string(keyFile))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := sign.NewSigner(priv)
	keys, _ := sign.NewVerifier(s.Public())
	v := &checkpoint.Verifier{Keys: keys, MaxSkew: time.Second}
	var parts origin.SnapshotParts = c.Store
	for _, ns := range []string{"routes", "keys"} {
		var cp *checkpoint.Checkpoint
		for {
			cp, err = checkpoint.GetLatest(ctx, parts, ns)
			if err == nil && cp.Count > 0 {
				h, n := originState(t, c.Store, ns)
				if err = checkpoint.Match(cp, &h, n); err == nil {
					break
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("no checkpoint of %s matching the origin's state before the deadline (last %v, err %v)", ns, cp, err)
			}
			time.Sleep(50 * time.Millisecond) // polled: the issuer runs on its own ticker
		}
		if err := v.Verify(cp, nil); err != nil {
			t.Fatalf("the %s checkpoint does not verify: %v", ns, err)
		}
	}
}

// originState hashes the stored record of every key of ns the change log
// names: a full read of the namespace.
func originState(t *testing.T, s origin.Store, ns string) (statehash.Hash, uint64) {
	t.Helper()
	ctx := context.Background()
	changes, err := s.ReadLog(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var h statehash.Hash
	var n uint64
	seen := map[string]bool{}
	for _, c := range changes {
		if c.Namespace != ns || seen[c.Key] {
			continue
		}
		seen[c.Key] = true
		r, err := s.Get(ctx, ns, c.Key, 0)
		if err != nil {
			t.Fatal(err)
		}
		h.Add(statehash.ElementOf(r))
		n++
	}
	return h, n
}
