package gossip

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// verifyingCluster starts a publisher's node (node 0: an observer that
// checks no signatures, as a publisher without a signing key) and n-1
// verifying nodes trusting s, whose log followers read every 100 ms.
func verifyingCluster(t *testing.T, n int, s *sign.Signer) *cluster {
	t.Helper()
	return newCluster(t, clusterOpts{n: n, tweak: func(i int, cfg *Config) {
		cfg.ReportInterval = 100 * time.Millisecond
		if i == 0 {
			cfg.Observer = true
			return
		}
		v, err := sign.NewVerifier(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Verifier = v
	}, follow: func(i int, fc *follow.Config) {
		fc.Interval = 100 * time.Millisecond
	}})
}

// TestReceiptCountsOnlyApplied is issue 23's reproduction 5: with
// verifying nodes, an unsigned write's receipt said "met, 2 of 2 applied"
// while 0 of 2 held it, because their log cursors passed it; and share
// 1e-10 was met with 0 nodes. Now a member counts only for the version it
// says it holds, both nodes report their refusal with its reason, the
// receipt ends at once (the share can no longer be reached), and share
// 1e-10 is an error.
func TestReceiptCountsOnlyApplied(t *testing.T) {
	t.Parallel()
	s := testSigner(t)
	c := verifyingCluster(t, 3, s)

	bad := c.publish(0, "keys", "unsigned", []byte("v1")) // unsigned: refused by nodes 1 and 2
	// A signed write the nodes apply: once their log cursors pass it (and
	// so the unsigned write too), their fleet reports say so.
	good := c.publishSigned(0, s, "keys", "signed", []byte("v2"))
	eventually(t, 30*time.Second, func() bool {
		r := c.nodes[0].reports
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, name := range []string{"node-01", "node-02"} {
			if m := r.members[name]; m == nil || !m.valid || m.report.Cursor < good.Version {
				return false
			}
		}
		return true
	}, "node 0 to hear that both nodes' cursors passed the unsigned write")
	for _, i := range []int{1, 2} {
		if got := c.appliers[i].version("keys", "unsigned"); got >= bad.Version {
			t.Fatalf("node %d holds the unsigned write (%s): the setup is wrong", i, got)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := refusedReceipt(t, c.nodes[0], bad, 2)
	if r.Met || !errors.Is(err, ErrRefused) {
		t.Fatalf("receipt of an unsigned write on verifying nodes: met=%v err=%v, want not met and ErrRefused\n%s", r.Met, err, r)
	}
	if len(r.Regions) != 1 || r.Regions[0].Applied != 0 || r.Regions[0].Total != 2 {
		t.Fatalf("want 0 of 2 applied:\n%s", r)
	}
	want := []Refusal{{Node: "node-01", Reason: "unsigned"}, {Node: "node-02", Reason: "unsigned"}}
	if got := r.Regions[0].Refused; !slices.Equal(got, want) {
		t.Errorf("refused %v, want %v\n%s", got, want, r)
	}
	if len(r.Regions[0].Pending) != 0 {
		t.Errorf("pending %v: a member that refused is not pending", r.Regions[0].Pending)
	}

	if _, err := c.nodes[0].Receipt(ctx, good.Namespace, good.Key, good.Version, 1e-10); !errors.Is(err, ErrBadShare) {
		t.Errorf("share 1e-10: %v, want ErrBadShare", err)
	}
	// The signed write counts: each node acknowledged it.
	r, err = c.nodes[0].Receipt(ctx, good.Namespace, good.Key, good.Version, 1)
	if err != nil || !r.Met || r.Regions[0].Applied != 2 {
		t.Errorf("receipt of the signed write: %v\n%s", err, r)
	}
}

// refusedReceipt asks n for the receipt (share 1) of rec until it lists
// want refusals or is met. Receipt returns ErrRefused two query delays after
// the first refusal makes the share unreachable, listing the refusals heard
// by then: on a loaded machine another member's refusal can come later.
func refusedReceipt(t *testing.T, n *Node, rec record.Record, want int) (Receipt, error) {
	t.Helper()
	var (
		r   Receipt
		err error
	)
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err = n.Receipt(ctx, rec.Namespace, rec.Key, rec.Version, 1)
		return r.Met || !errors.Is(err, ErrRefused) || len(r.Regions) == 1 && len(r.Regions[0].Refused) >= want
	}, "a receipt of %s/%s listing %d refusals", rec.Namespace, rec.Key, want)
	return r, err
}

// TestReceiptShowsRefusalReasons: changes whose signature is bad, or made
// by a key the nodes do not trust, are refused; the receipt names each
// refusing node with the reason, and so does every node's fleet view.
func TestReceiptShowsRefusalReasons(t *testing.T) {
	t.Parallel()
	s, stranger := testSigner(t), testSigner(t)
	c := verifyingCluster(t, 3, s)

	untrusted := stranger.Sign(record.Record{Namespace: "keys", Key: "a", Value: []byte("x"), Version: c.clock.Now()})
	forged := s.Sign(record.Record{Namespace: "keys", Key: "b", Value: []byte("x"), Version: c.clock.Now()})
	forged.Version = c.clock.Now() // the signature no longer covers it
	for _, tc := range []struct {
		rec    record.Record
		reason string
	}{{untrusted, "untrusted_key"}, {forged, "bad_signature"}} {
		if err := c.nodes[0].Publish(context.Background(), tc.rec); err != nil {
			t.Fatal(err)
		}
		r, err := refusedReceipt(t, c.nodes[0], tc.rec, 2)
		if !errors.Is(err, ErrRefused) || r.Met {
			t.Fatalf("%s: %v\n%s", tc.reason, err, r)
		}
		want := []Refusal{{Node: "node-01", Reason: tc.reason}, {Node: "node-02", Reason: tc.reason}}
		if got := r.Regions[0].Refused; !slices.Equal(got, want) {
			t.Errorf("refused %v, want %v", got, want)
		}
		if out := r.String(); !strings.Contains(out, "REFUSED by: node-01 ("+tc.reason+"), node-02 ("+tc.reason+")") {
			t.Errorf("receipt text does not show the refusals:\n%s", out)
		}
	}
	// The fleet view (node 1's, of node 2's report) shows the refusals.
	eventually(t, 60*time.Second, func() bool {
		for _, m := range c.nodes[1].Fleet().Members {
			if m.Name == "node-02" && len(m.Refused) == 2 && m.Refused[0].Reason == "bad_signature" && m.Refused[1].Reason == "untrusted_key" {
				return true
			}
		}
		return false
	}, "node 1's fleet view to show node 2's two refusals: %+v\n%+v", c.nodes[1].Fleet().Members, c.nodes[2].Fleet().Members)
}
