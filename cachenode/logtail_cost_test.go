package cachenode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// tailScenario is one workload of TestLogTailCost: a log history, readers
// with cursors in it, and rounds of appends, each followed by every reader
// polling until it has caught up.
type tailScenario struct {
	name    string
	readers int
	// old changes lie below the shared read's floor (more than LogTailSpan
	// ago); recent ones within the span. Readers' cursors are given as the
	// number of changes of the history (old then recent) above them.
	old, recent int
	behind      func(i int) int // changes of the history above reader i's cursor
	rounds      int
	perRound    int // changes appended per round (the last through the node)
}

// tailCost is what one scenario cost in one mode.
type tailCost struct {
	polls, reads int64
}

// TestLogTailCost measures the origin change-log reads a cache node makes
// for its readers' polls with logtail's sharing (LogTailTTL) and without it
// (every poll reads the origin), under lagging cursors, bursts larger than a
// page, and a steady baseline, and asserts the bound logtail keeps in each.
//
// Time is taken out of the counts: the TTL is an hour, and each round starts
// with an append through the node, which drops the shared read (as a TTL
// expiry would). A round is thus one TTL window in which every poll of the
// round falls: sharing's best case. LogTailSpan is a day, with the history
// within the last hour (recent) or two days back (old), so the figures are
// those of the default 10 s span when the recent history is within 10 s of
// the polls, whatever the machine's load.
//
// Readers page like follow.Follower: up to wire.MaxLogPage changes a poll,
// again at once from one version below the page's last when the page was
// full, until a short page. Every reader must end each round at the log's
// head, in both modes.
//
// Before logtail read from the short request's cursor and kept off a dense
// floor, it cost more than no sharing when the span held a page of changes
// below the readers' cursors (after a burst; or at a steady 100 changes/s
// with the default span): the shared read, from the floor, filled its page
// before the cursors, and every request then read the origin alone, one
// more read a round than without sharing (63 origin reads for 60 polls in
// "bursts", 110 for 100 in "after a burst"). Polls here are sequential, so
// the counts are exact; TestLogReadsShared covers concurrent requests. See
// BENCHMARKS.md, "Shared change-log reads".
func TestLogTailCost(t *testing.T) {
	scenarios := []tailScenario{
		{name: "steady", readers: 10, recent: 300,
			behind: func(int) int { return 0 }, rounds: 10, perRound: 5},
		// 5 readers at the head, 2 within the span (100 and 250 changes
		// behind), 3 below it (500, 900 and 1,250 behind: the last more
		// than a page).
		{name: "lagging", readers: 10, old: 1000, recent: 300,
			behind: func(i int) int { return []int{0, 0, 0, 0, 0, 100, 250, 500, 900, 1250}[i] }, rounds: 10, perRound: 5},
		// Every round appends more than a page.
		{name: "bursts", readers: 10, recent: 300,
			behind: func(int) int { return 0 }, rounds: 3, perRound: wire.MaxLogPage + 100},
		// Steady rounds within the span of a burst: a page and more of
		// changes below every reader's cursor.
		{name: "after a burst", readers: 10, recent: wire.MaxLogPage + 100,
			behind: func(int) int { return 0 }, rounds: 10, perRound: 5},
		// The same with one reader: nothing to share, and the one read
		// from the floor that finds it dense is wasted.
		{name: "after a burst, one reader", readers: 1, recent: wire.MaxLogPage + 100,
			behind: func(int) int { return 0 }, rounds: 10, perRound: 5},
	}
	now := time.Now()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			hist := t.TempDir()
			versions := writeHistory(t, hist, sc, now)
			shared := runTailScenario(t, sc, hist, versions, now, time.Hour)
			direct := runTailScenario(t, sc, hist, versions, now, 0)
			polls := sc.readers * sc.rounds
			t.Logf("%s: %d readers, %d rounds: %d polls; origin log reads: %d with logtail, %d without (ratio %.2f); %.2f per poll with logtail",
				sc.name, sc.readers, sc.rounds, shared.polls, shared.reads, direct.reads,
				float64(shared.reads)/float64(direct.reads), float64(shared.reads)/float64(shared.polls))
			if shared.polls != direct.polls || shared.polls < int64(polls) {
				t.Fatalf("polls: %d with logtail, %d without, want equal and at least %d", shared.polls, direct.polls, polls)
			}
			if direct.reads != direct.polls {
				t.Fatalf("without sharing: %d origin reads for %d polls, want one each", direct.reads, direct.polls)
			}
			// Never more than without sharing, but for the one read from
			// a dense floor when there is nothing to share.
			extra := int64(0)
			if sc.readers == 1 {
				extra = 1
			}
			if shared.reads > direct.reads+extra {
				t.Fatalf("%s: %d origin reads with logtail, %d without sharing", sc.name, shared.reads, direct.reads)
			}
			var limit int64
			switch sc.name {
			case "steady":
				// One origin read a round answers every reader.
				limit = int64(sc.rounds)
			case "lagging":
				// One a round, and at most two for each of the 3 readers
				// below the span: its own read, and one for the readers
				// above it when its full page cannot answer them.
				limit = int64(sc.rounds) + 2*3
			case "bursts":
				// One a page each round (a round's changes take two), and
				// one wasted read from the floor: the first full page the
				// floor holds.
				limit = 2*int64(sc.rounds) + 1
			case "after a burst", "after a burst, one reader":
				// One a round, and one wasted read from the floor.
				limit = int64(sc.rounds) + 1
			}
			if shared.reads > limit {
				t.Fatalf("%s: %d origin reads with logtail for %d polls, want at most %d", sc.name, shared.reads, shared.polls, limit)
			}
		})
	}
}

// writeHistory appends the scenario's history to a dir store at root and
// returns its versions, old then recent, in order.
func writeHistory(t *testing.T, root string, sc tailScenario, now time.Time) []record.Version {
	t.Helper()
	d, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	var vs []record.Version
	old := record.MakeVersion(now.Add(-48*time.Hour), 0)
	for i := range sc.old {
		vs = append(vs, old+record.Version(i))
	}
	recent := record.MakeVersion(now.Add(-50*time.Minute), 0)
	for i := range sc.recent {
		vs = append(vs, recent+record.Version(i))
	}
	appendAll(t, d, vs)
	return vs
}

// appendAll appends one change per version to d, a few at a time (each
// append waits on the disk, not the CPU).
func appendAll(t *testing.T, d *dir.Store, vs []record.Version) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(vs); i += 4 {
				c := record.Change{Namespace: "cfg", Key: fmt.Sprint("k", vs[i]), Version: vs[i]}
				if err := d.AppendLog(context.Background(), c); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// runTailScenario runs sc against a copy of the history in hist, through a
// cache node with the given LogTailTTL, and counts the readers' polls and
// the origin's log reads.
func runTailScenario(t *testing.T, sc tailScenario, hist string, history []record.Version, now time.Time, ttl time.Duration) tailCost {
	t.Helper()
	root := filepath.Join(t.TempDir(), "store")
	if err := os.CopyFS(root, os.DirFS(hist)); err != nil {
		t.Fatal(err)
	}
	d, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	store := &logCounting{Store: d}
	cfg := cachenode.DefaultConfig()
	cfg.Origin, cfg.WriteToken, cfg.Logger = store, token, slog.New(slog.DiscardHandler)
	cfg.Timing = tailTiming(ttl)
	cachenode.SetLogTailSpan(&cfg, 24*time.Hour)
	node, err := cachenode.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node)
	defer func() { srv.Close(); node.Close() }()

	cursors := make([]record.Version, sc.readers)
	for i := range cursors {
		cursors[i] = history[len(history)-1-sc.behind(i)]
	}
	rng := rand.New(rand.NewPCG(21, 5)) // the same poll order in both modes
	next := record.MakeVersion(now.Add(-10*time.Minute), 0)
	var cost tailCost
	r0 := store.reads.Load()
	for round := range sc.rounds {
		// Append the round's changes, the last through the node.
		vs := make([]record.Version, sc.perRound)
		for i := range vs {
			vs[i], next = next, next+1
		}
		appendAll(t, d, vs[:len(vs)-1])
		postLog(t, srv, record.Change{Namespace: "cfg", Key: "round", Version: vs[len(vs)-1]})
		head := vs[len(vs)-1]

		// Every reader polls, one poll each in turn (in an order drawn
		// per round), until each has had a short page.
		pending := make([]int, sc.readers)
		for i := range pending {
			pending[i] = i
		}
		for len(pending) > 0 {
			rng.Shuffle(len(pending), func(a, b int) { pending[a], pending[b] = pending[b], pending[a] })
			var still []int
			for _, i := range pending {
				cs := tailPoll(t, srv, cursors[i])
				cost.polls++
				if len(cs) == 0 {
					continue
				}
				last := cs[len(cs)-1].Version
				if len(cs) < wire.MaxLogPage {
					cursors[i] = last
					continue
				}
				if cs[0].Version != last {
					last-- // as follow.Follower: the last version may have more keys
				}
				cursors[i] = last
				still = append(still, i)
			}
			pending = still
		}
		for i, c := range cursors {
			if c != head {
				t.Fatalf("round %d, LogTailTTL %s: reader %d caught up to %s, want the head %s", round, ttl, i, c, head)
			}
		}
	}
	cost.reads = store.reads.Load() - r0
	if fromOrigin, _ := node.LogReads(); fromOrigin != cost.reads {
		t.Fatalf("the node counts %d origin log reads, the store %d", fromOrigin, cost.reads)
	}
	return cost
}

// tailPoll reads one page of the log after `after` through srv.
func tailPoll(t *testing.T, srv *httptest.Server, after record.Version) []record.Change {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + wire.LogPath + "?after=" + after.String() + "&limit=" + fmt.Sprint(wire.MaxLogPage))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/log after %s: %d %v %s", after, resp.StatusCode, err, b)
	}
	cs, err := wire.DecodeLogPage(b, after, wire.MaxLogPage)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// postLog appends c through srv (which drops the node's shared read).
func postLog(t *testing.T, srv *httptest.Server, c record.Change) {
	t.Helper()
	body, err := json.Marshal(wire.FromChange(c))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+wire.LogPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /v1/log: %d", resp.StatusCode)
	}
}
