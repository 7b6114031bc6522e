package publisher_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/origin/mem"
	"github.com/dataplane/dataplane/publisher"
)

// gossipNode starts a loopback gossip node for receipt tests.
func gossipNode(t *testing.T, name, region string, observer bool, seeds []string) *gossip.Node {
	t.Helper()
	c := gossip.DefaultLocalConfig()
	c.Insecure, c.Name, c.Region, c.Observer, c.Seeds = true, name, region, observer, seeds
	c.ReportInterval = 100 * time.Millisecond
	ml := *c.Memberlist
	ml.ProbeInterval, ml.ProbeTimeout, ml.GossipInterval, ml.SuspicionMult = 300*time.Millisecond, 150*time.Millisecond, 30*time.Millisecond, 3
	c.Memberlist = &ml
	n, err := gossip.New(c, gossip.Funcs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestHTTPWaitReceipt: a PUT with ?wait answers 200 and a receipt naming
// every region once the sentinels' nodes applied the write, and 202 with
// the missing node named when one of them is gone.
func TestHTTPWaitReceipt(t *testing.T) {
	pubNode := gossipNode(t, "publisher", "eu", true, nil)
	eu := gossipNode(t, "eu-1", "eu", false, []string{pubNode.Addr()})
	us := gossipNode(t, "us-1", "us", false, []string{pubNode.Addr()})
	testkit.Eventually(t, 30*time.Second, "the 3 nodes to meet", func() bool {
		return len(pubNode.Members()) == 3 && len(eu.Members()) == 3 && len(us.Members()) == 3
	})
	e := newEnv(t, mem.New(), func(c *publisher.Config) { c.Notifier = pubNode })
	api := newAPI(t, e, token)

	type answer struct {
		Version string `json:"version"`
		Receipt struct {
			Met      bool    `json:"met"`
			Version  string  `json:"version"`
			WaitedMS float64 `json:"waited_ms"`
			Regions  []struct {
				Region  string   `json:"region"`
				Applied int      `json:"applied"`
				Total   int      `json:"total"`
				Pending []string `json:"pending"`
			} `json:"regions"`
		} `json:"receipt"`
	}
	status, _, body := api.do("PUT", "/v1/records/keys/k1?wait=10s", token, strings.NewReader("v1"))
	if status != http.StatusOK {
		t.Fatalf("PUT ?wait: %d %s", status, body)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if !a.Receipt.Met || a.Receipt.Version != a.Version || len(a.Receipt.Regions) != 2 {
		t.Fatalf("receipt %s", body)
	}
	for _, g := range a.Receipt.Regions {
		if g.Applied != 1 || g.Total != 1 {
			t.Errorf("region %+v, want 1/1 (the publisher's observer node not counted)", g)
		}
	}

	if got := e.metric(t, "dataplane_publisher_receipts_total"); got != 1 {
		t.Errorf("dataplane_publisher_receipts_total = %v after one receipt met, want 1", got)
	}

	// Bad parameters are refused before writing.
	for _, q := range []string{"wait=forever", "wait=10m", "wait=1s&share=0", "wait=1s&share=1.5", "share=0.5", "wait=1s&share=1e-10", "wait=1s&share=0.4"} {
		if status, _, body := api.do("PUT", "/v1/records/keys/bad?"+q, token, strings.NewReader("x")); status != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, status, body)
		}
	}
	if _, err := e.pub.Get(testCtx(t), "keys", "bad"); err == nil {
		t.Error("a request with bad wait parameters wrote its record")
	}

	// us-1 crashes: the receipt is not met within the wait.
	_ = us.Close()
	status, _, body = api.do("DELETE", "/v1/records/keys/k1?wait=1s&share=1", token, nil)
	if status != http.StatusAccepted {
		t.Fatalf("DELETE ?wait with us-1 down: %d %s, want 202", status, body)
	}
	a = answer{}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(a.Receipt.Regions)
	if a.Receipt.Met || !strings.Contains(got, "us 0 1 [us-1]") || !strings.Contains(got, "eu 1 1") {
		t.Errorf("receipt with us-1 down: %s", body)
	}
	// One met, one incomplete (DataplaneReceiptIncomplete alerts on the
	// latter); the refused requests waited for nothing.
	if got := e.metric(t, "dataplane_publisher_receipts_total"); got != 2 {
		t.Errorf("dataplane_publisher_receipts_total = %v after a receipt met and one incomplete, want 2", got)
	}
}

// TestHTTPWaitWithoutGossip: ?wait on a publisher without a gossip node is
// refused, and nothing is written.
func TestHTTPWaitWithoutGossip(t *testing.T) {
	e := newEnv(t, mem.New(), nil)
	api := newAPI(t, e, token)
	status, _, body := api.do("PUT", "/v1/records/keys/k?wait=1s", token, strings.NewReader("v"))
	if status != http.StatusBadRequest || !strings.Contains(errorOf(t, body), "gossip") {
		t.Fatalf("%d %s", status, body)
	}
}
