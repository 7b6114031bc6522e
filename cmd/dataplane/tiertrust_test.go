package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/checkpoint"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/schema"
	"github.com/dataplane/dataplane/sign"
)

// TestSentinelBehindTierRequiresCheckpoints runs, through the command
// line, a cache node and a sentinel reading through it, both with
// -trusted-keys and -require-checkpoints, in front of a directory origin
// where a signing publisher issues checkpoints. The sentinel warms up from
// the proven snapshot and proves the keys namespace current by matching
// checkpoints, all read through the cache node; before the node served
// checkpoint parts, the sentinel refused the snapshot and failed closed.
func TestSentinelBehindTierRequiresCheckpoints(t *testing.T) {
	tmp := t.TempDir()
	originDir := filepath.Join(tmp, "origin")
	store, err := dir.Open(originDir)
	if err != nil {
		t.Fatal(err)
	}
	pubKey, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := publisher.DefaultConfig()
	cfg.Signer, cfg.Schemas = signer, schema.NewRegistry()
	cfg.Timing.CheckpointLifetime, cfg.IssueCheckpoints = time.Minute, true
	cfg.Timing.LogInterval = 200 * time.Millisecond // its issuer reads the log, and checkpoints, that often
	pub, err := publisher.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pub.RunCheckpoints(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := range 3 {
		if _, err := pub.Put(ctx, "keys", fmt.Sprint("k", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		snap, err := pub.Snapshot(ctx, "keys")
		if err == nil {
			if _, err = checkpoint.GetProof(ctx, store, "keys", snap.Version); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no proven snapshot: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the issuer's state catches up with the log on its interval
	}

	trusted := sign.EncodePublicKey(pubKey)
	_, node := start(t, regexp.MustCompile(`cache node on http://(\S+) `),
		"cachenode", "-gossip=false", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-write-token", "w",
		"-origin", "dir://"+originDir, "-trusted-keys", trusted, "-require-checkpoints")
	_, adminAddr := start(t, regexp.MustCompile(`\(admin http://([^)\s]+)\)`),
		"sentinel", "-gossip=false", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-namespaces", "keys",
		"-origin", "http://"+node, "-trusted-keys", trusted, "-require-checkpoints")

	var last string
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := readyzDetail(adminAddr)
		if err == nil && len(st.Namespaces) == 1 {
			ns := st.Namespaces[0]
			if st.Ready && ns.Warmed && !ns.Heard.IsZero() && !ns.FailingClosed {
				return
			}
		}
		last = fmt.Sprintf("%+v %v", st, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sentinel behind the tier never warmed and proved keys current: %s", last)
}

func readyzDetail(addr string) (dataplane.Status, error) {
	var body struct {
		Detail dataplane.Status `json:"detail"`
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return body.Detail, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Detail, err
}
