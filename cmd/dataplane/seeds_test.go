package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/internal/gossiptune"
	"github.com/dataplane/dataplane/internal/testkit"
)

// TestSeedsDNS checks that -seeds given a DNS name joins every address the
// name resolves to (a Kubernetes headless Service: one A record per pod,
// all on the gossip port), and resolves it again when the node, left
// alone, retries its seeds (the pods behind the name were replaced). The
// name is served by a DNS server on loopback that the nodes' resolver
// configuration points to (memberlist resolves seed names over TCP with
// the servers of Memberlist.DNSConfigPath, /etc/resolv.conf in
// production); every node binds a 127.0.0.x address of its own on one port.
func TestSeedsDNS(t *testing.T) {
	const name = "dataplane-gossip.dataplane.svc.cluster.local"
	dns := startDNS(t)
	port := freeGossipPort(t)
	for _, tc := range []struct {
		name string
		// before: what the name resolves to when the joiner starts;
		// seeds: the nodes it must end up joining, whose addresses the
		// name resolves to after the joiner started.
		before []string
		seeds  []string
		joiner string
	}{
		{"joins every address at start", []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, "127.0.0.5"},
		{"re-resolves when alone", []string{"127.0.0.10"}, []string{"127.0.0.6", "127.0.0.7", "127.0.0.8"}, "127.0.0.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dns.set(name, tc.before)
			// Each seed node is a cluster of its own: only a joiner that
			// contacted every address sees them all.
			for _, ip := range tc.seeds {
				startGossipNode(t, "seed-"+ip, net.JoinHostPort(ip, port), "", dns.conf)
			}
			joiner := startGossipNode(t, "joiner-"+tc.joiner, net.JoinHostPort(tc.joiner, port), net.JoinHostPort(name, port), dns.conf)
			dns.set(name, tc.seeds)
			want := []string{net.JoinHostPort(tc.joiner, port)}
			for _, ip := range tc.seeds {
				want = append(want, net.JoinHostPort(ip, port))
			}
			slices.Sort(want)
			var got []string
			if !testkit.Poll(20*time.Second, func() bool {
				got = got[:0]
				for _, m := range joiner.Members() {
					got = append(got, m.Addr)
				}
				slices.Sort(got)
				return slices.Equal(got, want)
			}) {
				t.Fatalf("joiner sees members %v, want %v (DNS asked %d times)", got, want, dns.queries())
			}
		})
	}
}

// startGossipNode starts a dataplane node the way the sentinel command
// does, from its flags: -gossip-bind bind, -seeds seeds (if any), with a
// directory origin. Memberlist resolves seed names with the resolver
// configuration in dnsConf, on local-network timers; alone, the node
// retries its seeds every 200ms.
func startGossipNode(t *testing.T, name, bind, seeds, dnsConf string) *dataplane.Node {
	t.Helper()
	fs := flag.NewFlagSet("sentinel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var nf nodeFlags
	nf.register(fs)
	args := []string{"-origin", "dir://" + t.TempDir(), "-insecure", "-name", name, "-gossip-bind", bind}
	if seeds != "" {
		args = append(args, "-seeds", seeds)
	}
	if err := parseFlags(fs, args); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() && os.Getenv("SEEDS_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	}
	ctx := context.Background()
	store, err := nf.openOrigin(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := nf.nodeConfig(store, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Gossip.Seeds; seeds != "" && !slices.Equal(got, []string{seeds}) {
		t.Fatalf("-seeds %s became Seeds %v", seeds, got)
	}
	ml := memberlist.DefaultLocalConfig()
	ml.DNSConfigPath = dnsConf
	cfg.Gossip.Memberlist = ml
	cfg.Gossip.Tune(func(t *gossiptune.Tuning) { t.ReconnectInterval = 200 * time.Millisecond })
	node, err := dataplane.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("node %s on %s: %v", name, bind, err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}

// freeGossipPort returns a TCP and UDP port free on 127.0.0.1, for every node
// to bind on its own 127.0.0.x address.
func freeGossipPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			u.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no free port")
	return ""
}

// testDNS is an authoritative DNS server over TCP on loopback answering A
// (and ANY) questions from a table; conf is a resolv.conf naming it.
type testDNS struct {
	conf string

	mu      sync.Mutex // guards below
	answers map[string][]string
	asked   int
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{answers: map[string][]string{}, conf: filepath.Join(t.TempDir(), "resolv.conf")}
	if err := os.WriteFile(d.conf, []byte("nameserver "+l.Addr().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				d.serve(c)
			}()
		}
	}()
	return d
}

func (d *testDNS) set(name string, ips []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[name+"."] = ips
}

func (d *testDNS) queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked
}

// serve answers the length-prefixed DNS queries on c (RFC 1035 4.2.2).
func (d *testDNS) serve(c net.Conn) {
	for {
		var n uint16
		if binary.Read(c, binary.BigEndian, &n) != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp, err := d.answer(q)
		if err != nil {
			return
		}
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(resp)))); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// answer builds the response to one query: an A record per address of
// the asked name for types A and ANY, none for other types.
func (d *testDNS) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, fmt.Errorf("want one question")
	}
	// The question: labels up to the root, then type and class.
	i, name := 12, ""
	for {
		if i >= len(q) {
			return nil, fmt.Errorf("truncated name")
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l > 63 || i+1+l > len(q) {
			return nil, fmt.Errorf("bad label")
		}
		name += string(q[i+1:i+1+l]) + "."
		i += 1 + l
	}
	if i+4 > len(q) {
		return nil, fmt.Errorf("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]

	d.mu.Lock()
	d.asked++
	var ips []string
	if qtype == 1 || qtype == 255 { // A, ANY
		ips = d.answers[name]
	}
	d.mu.Unlock()

	resp := binary.BigEndian.AppendUint16(nil, binary.BigEndian.Uint16(q[0:2])) // ID
	flags := uint16(0x8400) | binary.BigEndian.Uint16(q[2:4])&0x0100            // QR, AA, RD copied
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)                // QDCOUNT
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(ips))) // ANCOUNT
	resp = append(resp, 0, 0, 0, 0)                              // NSCOUNT, ARCOUNT
	resp = append(resp, question...)
	for _, ip := range ips {
		a := net.ParseIP(ip).To4()
		resp = append(resp, 0xc0, 12) // the name: a pointer to the question's
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL
		resp = binary.BigEndian.AppendUint16(resp, 4)
		resp = append(resp, a...)
	}
	return resp, nil
}
