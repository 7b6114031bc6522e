package netsim

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/dataplane/dataplane/internal/testkit"
	"github.com/dataplane/dataplane/internal/testscale"
)

// recorder is a memberlist.Delegate that keeps what it receives and
// broadcasts what it is given.
type recorder struct {
	mu     sync.Mutex
	got    []string // NotifyMsg payloads
	states []string // MergeRemoteState payloads
	queue  [][]byte // broadcasts to hand out, all in the next round
	state  []byte   // LocalState
}

func (r *recorder) NodeMeta(int) []byte { return nil }

func (r *recorder) NotifyMsg(b []byte) {
	r.mu.Lock()
	r.got = append(r.got, string(b))
	r.mu.Unlock()
}

func (r *recorder) GetBroadcasts(overhead, limit int) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queue
	r.queue = nil
	return q
}

func (r *recorder) LocalState(bool) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *recorder) MergeRemoteState(b []byte, _ bool) {
	r.mu.Lock()
	r.states = append(r.states, string(b))
	r.mu.Unlock()
}

func (r *recorder) has(list *[]string, want string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range *list {
		if s == want {
			return true
		}
	}
	return false
}

// TestFilterRealMemberlist runs two memberlist nodes over each kind of
// transport with a Filter that drops user messages starting with "drop"
// and rewrites those starting with "swap", on their way to node b only:
// best-effort packets (compressed and not), broadcasts piggybacked on
// memberlist's gossip (a compound packet beside its own messages),
// reliable sends and push/pull states (streams, from either side) are
// each dropped or rewritten, the rest arrives as sent, node a gets
// everything, and the two stay members of each other throughout.
func TestFilterRealMemberlist(t *testing.T) {
	for _, kind := range []string{"udp/tcp", "memory"} {
		t.Run(kind, func(t *testing.T) {
			n := New(1)
			var mu sync.Mutex
			var seenTo []string
			toB := ""
			n.SetFilter(func(from, to string, msg []byte) []byte {
				mu.Lock()
				seenTo = append(seenTo, to)
				target := toB
				mu.Unlock()
				switch {
				case to != target:
					return msg
				case bytes.HasPrefix(msg, []byte("drop")):
					return nil
				case bytes.HasPrefix(msg, []byte("swap")):
					return append([]byte("swapped:"), msg[4:]...)
				}
				return msg
			})
			var ra, rb recorder
			long := strings.Repeat("compressible ", 40) // lzw makes it smaller: sent compressed
			ra.state = []byte("swap-state-of-a " + long)
			rb.state = []byte("state-of-b")
			start := func(name string, port int, d *recorder) *memberlist.Memberlist {
				cfg := memberlist.DefaultLocalConfig()
				cfg.Name, cfg.Delegate = name, d
				cfg.Logger = log.New(io.Discard, "", 0)
				cfg.PushPullInterval = 100 * time.Millisecond
				cfg.GossipInterval = 20 * time.Millisecond
				cfg.BindAddr, cfg.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
				if kind == "memory" {
					tr, err := n.ListenMemory(fmt.Sprintf("127.0.0.1:%d", port), "z", &Counters{})
					if err != nil {
						t.Fatal(err)
					}
					cfg.Transport, cfg.BindPort, cfg.AdvertisePort = tr, port, port
				} else {
					tr, err := n.Listen("127.0.0.1", 0, "z", nil)
					if err != nil {
						t.Fatal(err)
					}
					_, p, _ := net.SplitHostPort(tr.Addr())
					cfg.Transport = tr
					cfg.BindPort, _ = strconv.Atoi(p)
					cfg.AdvertisePort = cfg.BindPort
				}
				m, err := memberlist.Create(cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { m.Shutdown() })
				return m
			}
			a := start("a", 7101, &ra)
			b := start("b", 7102, &rb)
			mu.Lock()
			toB = b.LocalNode().Address()
			mu.Unlock()
			if _, err := a.Join([]string{b.LocalNode().Address()}); err != nil {
				t.Fatal(err)
			}
			// b joins a too: a answers b's push/pull on the stream it
			// accepted.
			if _, err := b.Join([]string{a.LocalNode().Address()}); err != nil {
				t.Fatal(err)
			}
			nb := b.LocalNode()
			for _, m := range []string{"drop-1", "keep-1", "swap-1", "drop-" + long, "keep-" + long} {
				if err := a.SendBestEffort(nb, []byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range []string{"drop-r", "keep-r", "swap-r"} {
				if err := a.SendReliable(nb, []byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			ra.mu.Lock()
			ra.queue = [][]byte{[]byte("drop-b"), []byte("keep-b"), []byte("swap-b")}
			ra.mu.Unlock()
			if err := b.SendBestEffort(a.LocalNode(), []byte("drop-to-a")); err != nil {
				t.Fatal(err)
			}
			wait := 10 * time.Second
			for _, want := range []string{"keep-1", "swapped:-1", "keep-" + long, "keep-r", "swapped:-r", "keep-b", "swapped:-b"} {
				testkit.Eventually(t, wait, "b to receive "+want, func() bool { return rb.has(&rb.got, want) })
			}
			// b pulls from a (its join included) and a pushes to b:
			// both hand b the rewritten state; a gets b's as it is.
			testkit.Eventually(t, wait, "b to merge a's rewritten state", func() bool { return rb.has(&rb.states, "swapped:-state-of-a "+long) })
			testkit.Eventually(t, wait, "a to merge b's state", func() bool { return ra.has(&ra.states, "state-of-b") })
			testkit.Eventually(t, wait, "a to receive drop-to-a", func() bool { return ra.has(&ra.got, "drop-to-a") })
			rb.mu.Lock()
			for _, s := range rb.got {
				if strings.HasPrefix(s, "drop") || strings.HasPrefix(s, "swap") && !strings.HasPrefix(s, "swapped:") {
					t.Errorf("b received %.20q, which the filter drops or rewrites", s)
				}
			}
			for _, s := range rb.states {
				if s != "swapped:-state-of-a "+long {
					t.Errorf("b merged state %.30q", s)
				}
			}
			rb.mu.Unlock()
			if a.NumMembers() != 2 || b.NumMembers() != 2 {
				t.Errorf("members: a sees %d, b sees %d, want 2", a.NumMembers(), b.NumMembers())
			}
			if n.Stats().Filtered == 0 {
				t.Error("Stats.Filtered is 0")
			}
			n.SetFilter(nil)
			if err := a.SendBestEffort(nb, []byte("drop-after")); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, wait, "b to receive drop-after once the filter is gone", func() bool { return rb.has(&rb.got, "drop-after") })
		})
	}
}

// TestShutdownWithUnreadStreams: Shutdown returns although nobody took the
// streams the transport accepted (memberlist stops reading StreamCh before
// it shuts its transport down); it hung when the wrapper stopped draining
// the inner transport first.
func TestShutdownWithUnreadStreams(t *testing.T) {
	n := New(1)
	a, err := n.Listen("127.0.0.1", 0, "z", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := n.Listen("127.0.0.1", 0, "z", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.StreamCh() // asked for, never read
	for range 3 {
		c, err := a.DialTimeout(b.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	done := make(chan error, 1)
	go func() { done <- b.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testscale.Duration(10 * time.Second)):
		t.Fatal("Shutdown hangs with accepted streams nobody read")
	}
}
