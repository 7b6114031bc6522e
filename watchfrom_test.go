package dataplane_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
)

// watchCluster is two real memberlist nodes on loopback over one origin: a
// publishes, b is watched.
type watchCluster struct {
	t     *testing.T
	store *outage
	clock *record.Clock
	a, b  *dataplane.Node

	mu     sync.Mutex // guards latest
	latest map[string]record.Version
}

func newWatchCluster(t *testing.T) *watchCluster {
	c := &watchCluster{t: t, store: newStore(t), clock: record.NewClock(nil), latest: make(map[string]record.Version)}
	var seeds []string
	for _, name := range []string{"a", "b"} {
		g := gossip.DefaultLocalConfig()
		g.Insecure = true
		g.Name, g.Region, g.Seeds = name, "local", seeds
		n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: c.store, Gossip: &g.Cluster, Timing: followTiming(500*time.Millisecond, 200*time.Millisecond), Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if c.a == nil {
			c.a, seeds = n, []string{n.GossipAddr()}
		} else {
			c.b = n
		}
	}
	eventually(t, 30*time.Second, "2 members, routes complete on b", func() bool {
		return len(c.a.Members()) == 2 && len(c.b.Members()) == 2 && c.b.Complete("routes")
	})
	return c
}

// publish writes a change (a tombstone if del) to the origin and gossips it
// from a; it is safe for concurrent use.
func (c *watchCluster) publish(key string, del bool) record.Record {
	r := record.Record{Namespace: "routes", Key: key, Value: []byte(key), Version: c.clock.Now(), Tombstone: del}
	if del {
		r.Value = nil
	}
	if _, err := origin.Publish(context.Background(), c.store, r); err != nil {
		c.t.Error(err)
		return r
	}
	if err := c.a.Publish(context.Background(), r); err != nil {
		c.t.Error(err)
	}
	c.mu.Lock()
	c.latest[key] = max(c.latest[key], r.Version)
	c.mu.Unlock()
	return r
}

func (c *watchCluster) latestAfter(after record.Version) map[string]record.Version {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]record.Version)
	for k, v := range c.latest {
		if v > after {
			out[k] = v
		}
	}
	return out
}

// collect reads ws until every key of want has been delivered at its
// version (or later), checking the watch's promises on the way: versions
// after `after`, per key increasing, no (key, version) twice. It returns
// the changes read and the last cursor.
func collect(t *testing.T, ws *dataplane.WatchStream, after record.Version, want func() map[string]record.Version) ([]record.Change, record.Version) {
	t.Helper()
	var got []record.Change
	seen := make(map[string]record.Version)
	cursor := after
	deadline := time.After(60 * time.Second)
	for {
		done := true
		for k, v := range want() {
			if seen[k] < v {
				done = false
				break
			}
		}
		if done {
			return got, cursor
		}
		select {
		case ev, ok := <-ws.C:
			if !ok {
				t.Fatalf("watch ended: %v", ws.Err())
			}
			if ev.Cursor < cursor {
				t.Fatalf("cursor went back from %s to %s", cursor, ev.Cursor)
			}
			cursor = ev.Cursor
			if ev.Progress {
				continue
			}
			c := ev.Change
			if c.Version <= after {
				t.Fatalf("delivered %s@%s, not after the cursor %s", c.Key, c.Version, after)
			}
			if c.Version <= seen[c.Key] {
				t.Fatalf("delivered %s@%s after %s@%s: a duplicate or out of order", c.Key, c.Version, c.Key, seen[c.Key])
			}
			seen[c.Key] = c.Version
			got = append(got, c)
		case <-deadline:
			missing := make(map[string]record.Version)
			for k, v := range want() {
				if seen[k] < v {
					missing[k] = v
				}
			}
			t.Fatalf("timed out; still missing %v", missing)
		}
	}
}

// TestWatchFromResumes: a watch resumed from an old cursor receives every
// key's latest change after it, in version order, then live changes
// published concurrently with the replay, and nothing twice; resuming
// again from a progress cursor misses nothing.
func TestWatchFromResumes(t *testing.T) {
	c := newWatchCluster(t)
	ctx := context.Background()
	var versions []record.Version
	for i := range 40 {
		r := c.publish(fmt.Sprintf("h%d.example.com", i%10), i%7 == 6)
		versions = append(versions, r.Version)
	}
	eventually(t, 30*time.Second, "b knows every change", func() bool {
		for k, v := range c.latestAfter(0) {
			if ch, ok := c.b.Known("routes", k); !ok || ch.Version < v {
				return false
			}
		}
		return true
	})

	// A quiet replay: exactly the latest change of each key changed after
	// the cursor, in ascending version order.
	old := versions[15]
	ws, err := c.b.WatchFrom(ctx, "routes", old, dataplane.WatchOptions{Progress: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	want := c.latestAfter(old)
	got, _ := collect(t, ws, old, func() map[string]record.Version { return want })
	ws.Stop()
	if len(got) != len(want) {
		t.Fatalf("replay delivered %d changes %v, want the %d latest %v", len(got), got, len(want), want)
	}
	for i, ch := range got {
		if want[ch.Key] != ch.Version {
			t.Fatalf("replay delivered %s@%s, want its latest %s", ch.Key, ch.Version, want[ch.Key])
		}
		if i > 0 && ch.Version < got[i-1].Version {
			t.Fatalf("replay out of version order: %s after %s", ch.Version, got[i-1].Version)
		}
	}

	// Resume from the same old cursor with publishes racing the replay.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.publish(fmt.Sprintf("h%d.example.com", i%13), i%11 == 10)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ws, err = c.b.WatchFrom(ctx, "routes", old, dataplane.WatchOptions{Progress: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let publishes overlap the replay and live phase
	close(stop)
	wg.Wait()
	got, cursor := collect(t, ws, old, func() map[string]record.Version { return c.latestAfter(old) })
	if len(got) == 0 {
		t.Fatal("nothing delivered")
	}
	// Wait for a progress cursor past the last publish, stop, publish
	// more, and resume from that cursor: everything after it arrives.
	last := c.latestAfter(0)
	var maxV record.Version
	for _, v := range last {
		maxV = max(maxV, v)
	}
	deadline := time.After(60 * time.Second)
	for cursor < maxV {
		select {
		case ev, ok := <-ws.C:
			if !ok {
				t.Fatalf("watch ended: %v", ws.Err())
			}
			cursor = ev.Cursor
		case <-deadline:
			t.Fatalf("no progress cursor past %s (at %s)", maxV, cursor)
		}
	}
	ws.Stop()
	for range ws.C {
	}
	if !errors.Is(ws.Err(), context.Canceled) {
		t.Fatalf("stopped watch: Err = %v, want context.Canceled", ws.Err())
	}
	if now := c.clock.Now(); cursor > now {
		t.Fatalf("progress cursor %s is ahead of every version taken (%s)", cursor, now)
	}
	late := make(map[string]record.Version)
	for i := range 10 {
		r := c.publish(fmt.Sprintf("late%d.example.com", i), false)
		late[r.Key] = r.Version
	}
	ws, err = c.b.WatchFrom(ctx, "routes", cursor, dataplane.WatchOptions{Progress: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	collect(t, ws, cursor, func() map[string]record.Version {
		want := c.latestAfter(cursor)
		for k, v := range late { // whatever the cursor claims
			want[k] = v
		}
		return want
	})
}

// TestWatchFromLagged: a reader that falls a buffer behind gets
// ErrWatchLagged (nothing dropped silently), and resuming from its last
// cursor delivers the rest.
func TestWatchFromLagged(t *testing.T) {
	c := newWatchCluster(t)
	ctx := context.Background()
	start := c.clock.Now()
	ws, err := c.b.WatchFrom(ctx, "routes", start, dataplane.WatchOptions{Buffer: 4, Progress: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		c.publish(fmt.Sprintf("k%d.example.com", i), false)
	}
	eventually(t, 30*time.Second, "b knows every change", func() bool {
		for k, v := range c.latestAfter(0) {
			if ch, ok := c.b.Known("routes", k); !ok || ch.Version < v {
				return false
			}
		}
		return true
	})
	n := 0
	cursor := start
	for ev := range ws.C {
		cursor = ev.Cursor
		if !ev.Progress {
			n++
		}
	}
	if !errors.Is(ws.Err(), dataplane.ErrWatchLagged) {
		t.Fatalf("Err = %v after %d changes, want ErrWatchLagged", ws.Err(), n)
	}
	if n >= 200 {
		t.Fatalf("a lagged watch delivered all %d changes", n)
	}
	ws, err = c.b.WatchFrom(ctx, "routes", cursor, dataplane.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ws.Stop)
	collect(t, ws, cursor, func() map[string]record.Version { return c.latestAfter(cursor) })
}

func TestWatchFromRefusesPartialNamespace(t *testing.T) {
	n, err := dataplane.Open(context.Background(), dataplane.Config{Origin: newStore(t), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if _, err := n.WatchFrom(context.Background(), "configs", 0, dataplane.WatchOptions{}); !errors.Is(err, dataplane.ErrWatchIncomplete) {
		t.Fatalf("WatchFrom(configs) = %v, want ErrWatchIncomplete", err)
	}
}

// TestWatchHTTPStream: the NDJSON stream on a real loopback HTTP server
// (with short read and write timeouts, which the stream outlives) needs the
// token, replays, streams live changes with heartbeats, and resumes from a
// line's cursor.
func TestWatchHTTPStream(t *testing.T) {
	c := newWatchCluster(t)
	for i := range 5 {
		c.publish(fmt.Sprintf("s%d.example.com", i), false)
	}
	eventually(t, 30*time.Second, "b knows every change", func() bool {
		for k, v := range c.latestAfter(0) {
			if ch, ok := c.b.Known("routes", k); !ok || ch.Version < v {
				return false
			}
		}
		return true
	})
	mux := http.NewServeMux()
	mux.Handle(dataplane.WatchPath, dataplane.WatchHandler(c.b, "secret"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	base := "http://" + ln.Addr().String() + dataplane.WatchPath

	// Every request, stream included, ends within a minute: a test that
	// misses a line fails rather than hangs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	get := func(path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, tc := range []struct {
		path, token string
		status      int
	}{
		{"routes", "", http.StatusUnauthorized},
		{"routes", "wrong", http.StatusUnauthorized},
		{"routes?after=xyz", "secret", http.StatusBadRequest},
		{"routes?heartbeat=1ms", "secret", http.StatusBadRequest},
		{"configs", "secret", http.StatusNotFound},
	} {
		resp := get(tc.path, tc.token)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s (token %q): %d, want %d", tc.path, tc.token, resp.StatusCode, tc.status)
		}
	}

	// The whole namespace, then live changes past the server's timeouts.
	resp := get("routes?after=0&heartbeat=100ms", "secret")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan dataplane.WatchLine)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l dataplane.WatchLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("bad line %q: %v", sc.Text(), err)
				return
			}
			lines <- l
		}
	}()
	seen := make(map[string]record.Version)
	heartbeats := 0
	var cursor string
	read := func(until func() bool) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for !until() {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("stream ended")
				}
				cursor = l.Cursor
				switch l.Type {
				case "heartbeat":
					heartbeats++
				case "change":
					v, err := strconv.ParseUint(l.Version, 16, 64)
					if err != nil {
						t.Fatalf("line %+v: %v", l, err)
					}
					if record.Version(v) <= seen[l.Key] {
						t.Fatalf("line %+v: %s delivered twice or out of order", l, l.Key)
					}
					seen[l.Key] = record.Version(v)
				default:
					t.Fatalf("unexpected line %+v", l)
				}
			case <-deadline:
				t.Fatalf("timed out: seen %v, %d heartbeats", seen, heartbeats)
			}
		}
	}
	all := func() bool {
		for k, v := range c.latestAfter(0) {
			if seen[k] < v {
				return false
			}
		}
		return true
	}
	read(all)
	time.Sleep(time.Second) // past the server's read and write timeouts
	for i := range 5 {
		c.publish(fmt.Sprintf("live%d.example.com", i), i == 4)
	}
	read(all)
	before := heartbeats
	read(func() bool { return heartbeats >= before+2 })
	resp.Body.Close()

	// Resume from the last cursor.
	resumed := c.publish("after-resume.example.com", false)
	cv, _ := strconv.ParseUint(cursor, 16, 64)
	resp = get("routes?heartbeat=100ms&after="+cursor, "secret")
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("resume: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	want := c.latestAfter(record.Version(cv))
	want[resumed.Key] = resumed.Version
	got := make(map[string]string)
	for len(got) < len(want) && sc.Scan() {
		var l dataplane.WatchLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == "change" {
			if _, dup := got[l.Key]; dup {
				t.Fatalf("resumed stream delivered %s twice", l.Key)
			}
			got[l.Key] = l.Version
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("resumed stream: %v (got %v, want %v)", err, got, want)
	}
	for k, v := range want {
		if got[k] != v.String() {
			t.Fatalf("resumed stream: %s at %q, want %s (got %v)", k, got[k], v, got)
		}
	}
}
