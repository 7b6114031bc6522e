package gossip

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// testSigner returns a new signing key.
func testSigner(t testing.TB) *sign.Signer {
	t.Helper()
	_, priv, err := sign.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signedCluster starts n nodes, each with its own Verifier trusting pubs.
func signedCluster(t *testing.T, n int, tweak func(i int, c *Config), pubs ...ed25519.PublicKey) (*cluster, []*sign.Verifier) {
	t.Helper()
	vs := make([]*sign.Verifier, n)
	for i := range vs {
		v, err := sign.NewVerifier(pubs...)
		if err != nil {
			t.Fatal(err)
		}
		vs[i] = v
	}
	c := newCluster(t, clusterOpts{n: n, tweak: func(i int, cfg *Config) {
		if i < len(vs) {
			cfg.Verifier = vs[i]
		}
		if tweak != nil {
			tweak(i, cfg)
		}
	}})
	return c, vs
}

// publishSigned writes a record signed by s to the origin and hands it to
// node i, as a publisher would.
func (c *cluster) publishSigned(i int, s *sign.Signer, ns, key string, value []byte) record.Record {
	c.t.Helper()
	rec := s.Sign(record.Record{Namespace: ns, Key: key, Value: value, Version: c.clock.Now(), Tombstone: value == nil})
	if _, err := origin.Publish(context.Background(), c.store, rec); err != nil {
		c.t.Fatal(err)
	}
	if err := c.nodes[i].Publish(context.Background(), rec); err != nil {
		c.t.Fatal(err)
	}
	return rec
}

// droppedFor sums messages_dropped_total{reason} over the live nodes.
func (c *cluster) droppedFor(reason string) float64 {
	sum := 0.0
	for _, i := range c.live() {
		sum += testutil.ToFloat64(c.nodes[i].m.dropped.WithLabelValues(reason))
	}
	return sum
}

// refusedFor sums the followers' changes_refused_total{reason} over the
// live nodes.
func (c *cluster) refusedFor(reason string) float64 {
	sum := 0.0
	for _, i := range c.live() {
		sum += c.followed(i, "changes_refused_total", "reason="+reason)
	}
	return sum
}

// TestForgedSignedChangesRefused sends issue 12's forged datagrams to every
// node of a cluster that trusts one publisher key: unsigned, signed by an
// untrusted key, a version far in the future (validly signed), a valid
// signature moved onto a different value, a valid signature moved onto a
// higher version, an invalidation-only change with a forged seal, and a
// replay of an old signed change. No node changes anything, and each is
// counted (the replay as rejected: it is validly signed but old).
func TestForgedSignedChangesRefused(t *testing.T) {
	t.Parallel()
	pub := testSigner(t)
	evil := testSigner(t)
	secret := []byte("forgery-test-key-0123456789abcde")
	c, _ := signedCluster(t, 3, func(i int, cfg *Config) { cfg.SecretKeys = [][]byte{secret} }, pub.Public())
	const ns, key = "routes", "victim.example.com"

	old := c.publishSigned(0, pub, ns, key, []byte(`{"v":1}`))
	good := c.publishSigned(0, pub, ns, key, []byte(`{"v":2}`))
	eventually(t, 30*time.Second, func() bool { return c.has(ns, key, good.Version) }, "every node to take the signed version")

	next := c.clock.Now()
	future := record.MakeVersion(time.Now().Add(time.Hour), 0)
	// A publisher's valid signature of a new version (seen, say, on an
	// invalidation-only message) carrying another value.
	moved := pub.Sign(record.Record{Namespace: ns, Key: key, Value: []byte(`{"v":9}`), Version: next})
	moved.Value = []byte(`{"upstreams":["http://evil.example"]}`)
	bumped := good // the same signature, claiming a higher version
	bumped.Version = next
	forgedFloor := evil.Sign(record.Record{Namespace: ns, Key: key, Version: next, Value: []byte("x")})
	forgedFloor.Value = nil

	forgeries := []struct {
		name   string
		c      change
		reason string
	}{
		{"unsigned", change{rec: record.Record{Namespace: ns, Key: key, Value: []byte(`{"evil":1}`), Version: next}, inline: true, path: pathPush}, "unsigned"},
		{"untrusted key", change{rec: evil.Sign(record.Record{Namespace: ns, Key: key, Value: []byte(`{"evil":2}`), Version: next}), inline: true, path: pathRelay}, "untrusted_key"},
		{"far future, validly signed", change{rec: pub.Sign(record.Record{Namespace: ns, Key: key, Value: []byte(`{"evil":3}`), Version: future}), inline: true, path: pathPush}, "future"},
		{"signature over another value", change{rec: moved, inline: true, path: pathGossip}, "digest_mismatch"},
		{"signature on a higher version", change{rec: bumped, inline: true, path: pathPush}, "bad_signature"},
		{"floor with an untrusted seal", change{rec: forgedFloor, inline: false, path: pathPush}, "untrusted_key"},
		{"unsigned floor", change{rec: record.Record{Namespace: ns, Key: key, Version: next}, inline: false, path: pathGossip}, "unsigned"},
	}
	want := map[string]float64{}
	for _, f := range forgeries {
		msg := encodeChange(f.c)
		for _, n := range c.nodes {
			to := memberlist.Address{Addr: n.Addr(), Name: n.Name()}
			if err := c.nodes[0].ml.Load().SendToAddress(to, msg); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
		want[f.reason] += 3
	}
	// The log path (a forged change log entry) is checked the same way.
	c.nodes[1].receive(change{rec: record.Record{Namespace: ns, Key: key, Version: next, Tombstone: true}, inline: true, path: pathLog})
	want["unsigned"]++
	// The replay: validly signed, but older than what every node holds.
	rejectedBefore := 0.0
	for _, n := range c.nodes {
		rejectedBefore += testutil.ToFloat64(n.m.rejected.WithLabelValues("push"))
	}
	replay := encodeChange(change{rec: old, inline: true, path: pathPush})
	for _, n := range c.nodes {
		if err := c.nodes[0].ml.Load().SendToAddress(memberlist.Address{Addr: n.Addr(), Name: n.Name()}, replay); err != nil {
			t.Fatal(err)
		}
	}

	eventually(t, 30*time.Second, func() bool {
		for reason, n := range want {
			if c.droppedFor(reason) < n {
				return false
			}
		}
		rejected := 0.0
		for _, n := range c.nodes {
			rejected += testutil.ToFloat64(n.m.rejected.WithLabelValues("push"))
		}
		return rejected >= rejectedBefore+3
	}, "every node to drop and count every forgery (want %v)", want)
	for reason, n := range want {
		if got := c.droppedFor(reason); got != n {
			t.Errorf("dropped{reason=%q} = %v, want %v", reason, got, n)
		}
	}
	for i, a := range c.appliers {
		h := a.get(ns, key)
		if h.version != good.Version || string(h.value) != `{"v":2}` {
			t.Errorf("node %d holds %s %q, want the signed %s", i, h.version, h.value, good.Version)
		}
	}
	// Nothing forged was remembered either: the next signed publish of the
	// key (a version above every forged one but the future one) reaches all.
	rec := c.publishSigned(2, pub, ns, key, []byte(`{"v":3}`))
	eventually(t, 30*time.Second, func() bool { return c.has(ns, key, rec.Version) }, "every node to take the next signed version")
}

// TestGossipKeyHolderCannotForge: an insider holds the cluster's gossip
// encryption key but not the publisher's signing key. It joins, and
// publishes through its own gossip.Node a record signed with its own key
// and an unsigned one (it verifies nothing itself, so it spreads them):
// no other node applies either, and each is counted. A record signed by the
// publisher's key, published through the insider, does reach everyone, so
// the test is not vacuous.
func TestGossipKeyHolderCannotForge(t *testing.T) {
	t.Parallel()
	pub := testSigner(t)
	insiderKey := testSigner(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	c, _ := signedCluster(t, 4, func(i int, cfg *Config) {
		cfg.SecretKeys = [][]byte{secret}
		cfg.Insecure = false
		if i == 3 {
			cfg.Verifier = nil // the insider checks nothing
		}
	}, pub.Public())
	insider := 3
	honest := []int{0, 1, 2}

	signedByInsider := c.publishSigned(insider, insiderKey, "routes", "a.example.com", []byte(`{"evil":1}`))
	unsigned := record.Record{Namespace: "routes", Key: "b.example.com", Value: []byte(`{"evil":2}`), Version: c.clock.Now()}
	if err := c.nodes[insider].Publish(context.Background(), unsigned); err != nil {
		t.Fatal(err)
	}
	floor := insiderKey.Sign(record.Record{Namespace: "routes", Key: "c.example.com", Value: make([]byte, 2000), Version: c.clock.Now()})
	if err := c.nodes[insider].Publish(context.Background(), floor); err != nil { // too large to inline: an invalidation
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() bool {
		return c.droppedFor("untrusted_key") >= 6 && c.droppedFor("unsigned") >= 3
	}, "every honest node to drop the insider's changes")
	legit := c.publishSigned(insider, pub, "routes", "d.example.com", []byte(`{"ok":1}`))
	eventually(t, 30*time.Second, func() bool { return c.has("routes", "d.example.com", legit.Version) },
		"a publisher-signed record relayed by the insider to reach everyone")
	for _, i := range honest {
		for _, k := range []string{"a.example.com", "b.example.com", "c.example.com"} {
			if v := c.appliers[i].version("routes", k); v != 0 {
				t.Errorf("node %d applied the insider's %s at %s", i, k, v)
			}
		}
	}
	if v := c.appliers[insider].version("routes", "a.example.com"); v != signedByInsider.Version {
		t.Errorf("the insider itself holds %s, want its own %s (test not exercising spread)", v, signedByInsider.Version)
	}
}

// TestSigningKeyRotation rotates the publisher's key across a running
// 3-node cluster while a publisher writes continuously: every node trusts
// old and new, the publisher switches to the new key, every node drops the
// old key. No change is lost: every node ends with the last version of
// every key. Afterwards a change signed with the old key is refused.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := testSigner(t), testSigner(t)
	// Encrypted, so that other tests' plaintext clusters, whose nodes may
	// still talk to these ports, cannot inject unsigned changes here.
	secret := []byte("rotation-test-key-0123456789abcd")
	c, vs := signedCluster(t, 3, func(i int, cfg *Config) { cfg.SecretKeys = [][]byte{secret} }, oldKey.Public())

	var (
		mu      sync.Mutex
		signer  = oldKey
		last    = map[string]record.Version{}
		written atomic.Int64
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			s := signer
			mu.Unlock()
			key := fmt.Sprintf("k%02d", i%20)
			rec := s.Sign(record.Record{Namespace: "cfg", Key: key, Value: []byte(fmt.Sprint(i)), Version: c.clock.Now()})
			if _, err := origin.Publish(context.Background(), c.store, rec); err != nil {
				t.Error(err)
				return
			}
			if err := c.nodes[i%3].Publish(context.Background(), rec); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			last[key] = rec.Version
			mu.Unlock()
			written.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	converged := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range last {
			if !c.has("cfg", k, v) {
				return false
			}
		}
		return true
	}
	waitWrites := func(n int64) {
		target := written.Load() + n
		eventually(t, 60*time.Second, func() bool { return written.Load() >= target }, "%d more writes", n)
	}

	waitWrites(30)
	for _, v := range vs { // 1: trust old and new, one node at a time
		if err := v.Trust(oldKey.Public(), newKey.Public()); err != nil {
			t.Fatal(err)
		}
		waitWrites(10)
	}
	mu.Lock() // 2: the publisher switches to the new key
	signer = newKey
	mu.Unlock()
	waitWrites(30)
	// 3: once nothing signed with the old key is in flight (every node has
	// every write so far), drop it, one node at a time.
	eventually(t, 60*time.Second, converged, "every node to hold every write before dropping the old key")
	for _, v := range vs {
		if err := v.Trust(newKey.Public()); err != nil {
			t.Fatal(err)
		}
		waitWrites(10)
	}
	close(stop)
	<-done
	eventually(t, 60*time.Second, converged, "every node to hold the last version of every key")
	for _, reason := range []string{"untrusted_key", "unsigned", "bad_signature", "digest_mismatch"} {
		if n := c.droppedFor(reason); n != 0 {
			t.Errorf("%v changes were refused during the rotation (%s)", n, reason)
		}
	}

	stale := oldKey.Sign(record.Record{Namespace: "cfg", Key: "after", Value: []byte("x"), Version: c.clock.Now()})
	if err := c.nodes[0].Publish(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	if v := c.appliers[0].version("cfg", "after"); v != 0 {
		t.Fatalf("a change signed with the dropped key was applied at %s", v)
	}
	if got := c.droppedFor("untrusted_key"); got != 1 {
		t.Fatalf("dropped{untrusted_key} = %v after the old key was dropped, want 1", got)
	}
}

// fuzzSigned are the changes the fuzz key signed: the only ones
// FuzzSignedChange's Verifier may accept.
func fuzzSigned(t testing.TB) (*sign.Verifier, []change) {
	s, err := sign.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := sign.NewVerifier(s.Public())
	floor := s.Sign(record.Record{Namespace: "routes", Key: "big.example.com", Value: make([]byte, 2000), Version: 1 << 40})
	floor.Value = nil
	return v, []change{
		{rec: s.Sign(record.Record{Namespace: "routes", Key: "a.example.com", Value: []byte(`{"u":1}`), Version: 1 << 40}), inline: true, path: pathPush, from: "node-1"},
		{rec: s.Sign(record.Record{Namespace: "keys", Key: "ks/ab", Version: 1<<40 + 1, Tombstone: true}), inline: true, path: pathRelay, from: "node-2", share: share{1, 3}},
		{rec: floor, path: pathGossip},
	}
}

// FuzzSignedChange decodes arbitrary bytes as a gossip message and checks
// every change in it (a change message or a digest's entries) as a
// receiving node would (Node.verify): nothing panics, and nothing is
// accepted that the fuzz key did not sign. Seeds: the signed changes, and
// the corpus in testdata/fuzz/FuzzSignedChange (unsigned, re-keyed and
// tampered variants).
func FuzzSignedChange(f *testing.F) {
	v, signed := fuzzSigned(f)
	for _, c := range signed {
		f.Add(encodeChange(c))
	}
	f.Add(encodeDigest(digest{highWater: 1 << 41, changes: signed}, MaxDigestSize))
	n := &Node{cfg: Config{Verifier: v}}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			return
		}
		var cs []change
		switch {
		case m.change != nil:
			cs = []change{*m.change}
		case m.digest != nil:
			cs = m.digest.changes
		}
		for _, c := range cs {
			if n.verify(c) != nil {
				continue
			}
			ok := false
			for _, s := range signed {
				same := s.rec.Namespace == c.rec.Namespace && s.rec.Key == c.rec.Key && s.rec.Version == c.rec.Version &&
					s.rec.Tombstone == c.rec.Tombstone && s.rec.Seal.Digest == c.rec.Seal.Digest
				if c.inline {
					same = same && sign.Digest(c.rec.Value) == s.rec.Seal.Digest
				}
				ok = ok || same
			}
			if !ok {
				t.Fatalf("accepted a change nobody signed: %+v (inline %v)", c.rec, c.inline)
			}
		}
	})
}

// TestSignedLogBackstop: changes that reach the origin's change log but no
// gossip message are applied by a verifying node from the log when signed
// by the trusted key (their Seal travels in the log entry), and refused
// and counted when unsigned or signed by another key (someone with write
// access to the bucket).
func TestSignedLogBackstop(t *testing.T) {
	t.Parallel()
	pub, evil := testSigner(t), testSigner(t)
	c, _ := signedCluster(t, 1, nil, pub.Public())
	ctx := context.Background()
	write := func(r record.Record) record.Record {
		t.Helper()
		if _, err := origin.Publish(ctx, c.store, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	good := write(pub.Sign(record.Record{Namespace: "cfg", Key: "good", Value: []byte("v"), Version: c.clock.Now()}))
	gone := write(pub.Sign(record.Record{Namespace: "cfg", Key: "gone", Version: c.clock.Now(), Tombstone: true}))
	write(record.Record{Namespace: "cfg", Key: "unsigned", Value: []byte("x"), Version: c.clock.Now()})
	write(evil.Sign(record.Record{Namespace: "cfg", Key: "evil", Value: []byte("x"), Version: c.clock.Now()}))
	eventually(t, 30*time.Second, func() bool {
		c.followers[0].CatchUp("test") // read the log now: no gossip carried these
		return c.has("cfg", "good", good.Version) && c.has("cfg", "gone", gone.Version) &&
			c.refusedFor("unsigned") >= 1 && c.refusedFor("untrusted_key") >= 1
	}, "the node to apply the signed log entries and refuse the others")
	for _, k := range []string{"unsigned", "evil"} {
		if v := c.appliers[0].version("cfg", k); v != 0 {
			t.Errorf("applied %s from the log at %s", k, v)
		}
	}
}

// TestForgedRelayOfHeldVersionNotForwarded: a relay message carrying a
// version the node already holds is stale, so receive does not verify it;
// handle must still not forward a forged one (nor let it use up the
// version's one relay).
func TestForgedRelayOfHeldVersionNotForwarded(t *testing.T) {
	t.Parallel()
	pub := testSigner(t)
	c, _ := signedCluster(t, 1, nil, pub.Public())
	n := c.nodes[0]
	good := c.publishSigned(0, pub, "routes", "r.example.com", []byte(`{"v":1}`))
	forged := good
	forged.Value = []byte(`{"evil":1}`) // same version, another value: the seal no longer matches
	n.handle(change{rec: forged, inline: true, path: pathRelay})
	if !n.seen.markRelayed(recentID("routes", "r.example.com"), good.Version) {
		t.Fatal("the forged relay used up the version's relay: the genuine one would not be forwarded")
	}
}
