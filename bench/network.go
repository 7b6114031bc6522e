package bench

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/dataplane/dataplane/gossip/netsim"
	"github.com/dataplane/dataplane/internal/tick"
)

// network is the simulated geography of one run: which regions exist, the
// one-way delay between each pair, and the faults in force. Gossip traffic
// goes through gossip's netsim (packets and streams between memberlist
// nodes); HTTP traffic (origin and cache-tier requests) goes through
// delayingTransport, which waits the link's one-way delay before sending a
// request and again before handing back its response: the request is really
// sent, only later, as on a long link.
type network struct {
	sim     *netsim.Network
	regions []string
	lan     netsim.Link

	mu         sync.Mutex // guards links, cuts, originDown, gossipLoss
	links      map[[2]string]netsim.Link
	cuts       map[[2]string]bool
	originDown bool
	gossipLoss float64
}

func linkKey(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// newNetwork draws each region pair's delay uniformly from [minDelay,
// maxDelay] with the run's seed, so every option of a run sees the same
// geography.
func newNetwork(seed uint64, regions []string, minDelay, maxDelay, jitter time.Duration, lan netsim.Link) *network {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	n := &network{
		sim:     netsim.New(seed),
		regions: regions,
		lan:     lan,
		links:   make(map[[2]string]netsim.Link),
		cuts:    make(map[[2]string]bool),
	}
	for i, a := range regions {
		n.links[linkKey(a, a)] = lan
		for _, b := range regions[i+1:] {
			d := minDelay
			if maxDelay > minDelay {
				d += time.Duration(rng.Int64N(int64(maxDelay - minDelay + 1)))
			}
			n.links[linkKey(a, b)] = netsim.Link{Delay: d, Jitter: jitter}
		}
	}
	n.applyGossipLinks()
	return n
}

// link returns the link between regions a and b.
func (n *network) link(a, b string) netsim.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[linkKey(a, b)]
}

// applyGossipLinks copies the links, with the current gossip loss, into
// netsim.
func (n *network) applyGossipLinks() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, l := range n.links {
		l.Loss = n.gossipLoss
		n.sim.SetLink(k[0], k[1], l)
	}
}

// setGossipLoss makes every gossip packet (UDP) lost with probability p.
// Streams and HTTP stay reliable, as TCP is.
func (n *network) setGossipLoss(p float64) {
	n.mu.Lock()
	n.gossipLoss = p
	n.mu.Unlock()
	n.applyGossipLinks()
}

// isolate cuts region r from every other region, for gossip and HTTP.
func (n *network) isolate(r string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, o := range n.regions {
		if o != r {
			n.cuts[linkKey(r, o)] = true
			n.sim.Cut(r, o)
		}
	}
}

// healAll ends every partition.
func (n *network) healAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cuts)
	n.sim.HealAll()
}

// setOriginDown makes every request to the origin fail at once, as a
// refused connection does.
func (n *network) setOriginDown(down bool) {
	n.mu.Lock()
	n.originDown = down
	n.mu.Unlock()
}

// route returns the one-way delay of a request from region from to region
// to, or an error when the link is cut or (toOrigin) the origin is down.
func (n *network) route(from, to string, toOrigin bool) (time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if toOrigin && n.originDown {
		return 0, fmt.Errorf("bench: origin outage: %w", syscall.ECONNREFUSED)
	}
	if n.cuts[linkKey(from, to)] {
		return 0, fmt.Errorf("bench: %s and %s partitioned: %w", from, to, syscall.ECONNREFUSED)
	}
	l := n.links[linkKey(from, to)]
	d := l.Delay
	if l.Jitter > 0 {
		d += rand.N(l.Jitter)
	}
	return d, nil
}

// client returns an HTTP client whose requests travel from region from to
// region to through the simulated network. toOrigin marks requests that an
// origin outage fails.
func (n *network) client(from, to string, toOrigin bool) *http.Client {
	base := &http.Transport{
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: &delayingTransport{net: n, from: from, to: to, toOrigin: toOrigin, base: base}}
}

// delayingTransport is an http.RoundTripper that sends each request after
// the link's one-way delay and returns its response after another one, or
// fails it when the link is cut.
type delayingTransport struct {
	net      *network
	from, to string
	toOrigin bool
	base     http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *delayingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d, err := t.net.route(t.from, t.to, t.toOrigin)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if err := tick.Sleep(req.Context(), d); err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	back, rerr := t.net.route(t.to, t.from, t.toOrigin)
	if rerr != nil {
		// The link went down while the request was out: the answer is lost.
		resp.Body.Close()
		return nil, rerr
	}
	if err := tick.Sleep(req.Context(), back); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
