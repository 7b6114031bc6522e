// Package devcluster runs a whole dataplane on loopback in one process, for
// `dataplane dev`, the README's first command, and end-to-end tests: a
// directory origin, a publisher with its admin API, a regional cache node,
// three sentinels joined by gossip (the third reading through the cache
// node), two example upstreams, and example routes and API keys.
package devcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/admin"
	"github.com/dataplane/dataplane/cachenode"
	"github.com/dataplane/dataplane/follow"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/dir"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/publisher"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sentinel"
	"github.com/dataplane/dataplane/sign"
)

// Example data the cluster starts with.
const (
	// OpenHost routes to upstream A without a key.
	OpenHost = "hello.localhost"
	// APIHost routes to upstream A and requires a key of keyspace "demo".
	APIHost = "api.localhost"
	// GoodKey is an enabled API key of keyspace "demo".
	GoodKey = "dev_key_good_0123456789"
	// DisabledKey is a disabled API key of keyspace "demo".
	DisabledKey = "dev_key_disabled_0123456789"
	// Keyspace holds the example keys.
	Keyspace = "demo"
)

// Config configures a dev cluster. Zero fields take the defaults shown;
// Cluster reports the addresses in use.
type Config struct {
	// DataDir holds the origin directory and the sentinels' local
	// snapshots. Required.
	DataDir string
	// Host is the loopback address every listener binds. Default 127.0.0.1.
	Host string
	// SentinelPorts are the three sentinels' gateway ports; admin ports are
	// these plus 1000. Default 8081, 8082, 8083.
	SentinelPorts [3]int
	// PublisherPort serves the publisher's admin API. Default 8070.
	PublisherPort int
	// CacheNodePort serves the cache node. Default 8090.
	CacheNodePort int
	// UpstreamPorts serve the example upstreams A and B. Default 8061, 8062.
	UpstreamPorts [2]int
	// AnyPorts puts every listener on a free port instead; the Cluster and
	// PrintGuide report which.
	AnyPorts bool
	// Token guards the publisher API, cache node writes and admin debug
	// endpoints. Default "dev-token".
	Token string
	// Logger receives the cluster's logs; nil discards them.
	Logger *slog.Logger
	// Staleness, when set, is every sentinel's dataplane.Config.Staleness
	// (e.g. keys failing closed after seconds, not minutes, in a test).
	Staleness map[string]dataplane.Policy
	// Timing is the timing of the publisher, the cache node and the
	// sentinels (origin.Timing); the zero value means origin.LocalTiming().
	// A short fail-closed D in Staleness needs a CheckpointLifetime short
	// enough to renew the proof within it (dataplane.Config.Validate).
	Timing origin.Timing
	// WrapOrigin, when set, is given the origin store each sentinel
	// ("sentinel-1".."sentinel-3") reads and returns the one it reads
	// instead: a test's hook to fail one node's origin.
	WrapOrigin func(name string, s origin.Store) origin.Store
	// CheckpointsFromOriginOnly keeps the publisher from pushing its
	// checkpoints by gossip: sentinels then get them only with their
	// change-log reads, from an origin that serves snapshot parts. The
	// dev sentinels read through the cache tier, which serves none, so
	// they verify no checkpoint and keep the older proofs of freshness
	// (log reads): a test's way to make a sentinel cut from the origin
	// (WrapOrigin) fall behind while gossip still reaches it.
	CheckpointsFromOriginOnly bool
}

// Cluster is a running dev cluster.
type Cluster struct {
	cfg       Config
	Store     *dir.Store
	Publisher *publisher.Publisher
	Nodes     []*dataplane.Node
	Sentinels []*sentinel.Server
	CacheNode *cachenode.Server
	cacheGN   *gossip.Node
	cacheLog  *follow.Follower // the cache node's log follower
	servers   []*http.Server
	listeners []net.Listener
	Upstreams [2]string // base URLs of upstreams A and B
	// PublishURL is the base URL of the publisher's server: the API, and
	// beside it the admin endpoints `publish serve` has (/metrics,
	// /readyz, the fleet page; admin.PublisherHandler).
	PublishURL string
	CacheURL   string // base URL of the cache node
	// SigningKeyFile holds the publisher's ed25519 private key, generated
	// on the first start in DataDir and reused after: the publisher signs
	// every record with it and every sentinel and the cache node trust only
	// its public key (signing is on in dev, as it should be in production).
	SigningKeyFile string
	// PublicKey is that key's public half, base64 (for -trusted-keys).
	PublicKey string
	// KeyID is that key's id (sign.KeyID), the one every node trusts.
	KeyID     string
	closeOnce sync.Once
	// stopCheckpoints ends the publisher's checkpoint issuing; ckptDone
	// closes when it has.
	stopCheckpoints context.CancelFunc
	ckptDone        chan struct{}
}

// ListenError is the error Start returns when a port cannot be bound: Field
// names the Config field that picks the port (SentinelPorts, PublisherPort,
// CacheNodePort or UpstreamPorts), so a caller can say which setting fixes it.
type ListenError struct {
	Field string // the Config field of the port
	What  string // the component, e.g. "sentinel-2 admin"
	Addr  string // the address that could not be bound
	Err   error
}

// Error implements error.
func (e *ListenError) Error() string {
	cause := e.Err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err // "bind: address already in use", without the address again
	}
	return fmt.Sprintf("%s: cannot listen on %s: %v", e.What, e.Addr, cause)
}

// Unwrap returns the listen error.
func (e *ListenError) Unwrap() error { return e.Err }

// Start builds and starts the cluster. On error it returns a nil Cluster
// and everything it started is stopped again; a port that cannot be bound
// comes back as a *ListenError.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("devcluster: DataDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.SentinelPorts == [3]int{} {
		cfg.SentinelPorts = [3]int{8081, 8082, 8083}
	}
	if cfg.PublisherPort == 0 {
		cfg.PublisherPort = 8070
	}
	if cfg.CacheNodePort == 0 {
		cfg.CacheNodePort = 8090
	}
	if cfg.UpstreamPorts == [2]int{} {
		cfg.UpstreamPorts = [2]int{8061, 8062}
	}
	if cfg.Token == "" {
		cfg.Token = "dev-token"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg}
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// start starts the parts in order; Start closes whatever it got to on error.
func (c *Cluster) start(ctx context.Context) (err error) {
	cfg := c.cfg
	log := cfg.Logger

	if c.Store, err = dir.Open(filepath.Join(cfg.DataDir, "origin")); err != nil {
		return err
	}
	signer, verifier, err := c.devKeys()
	if err != nil {
		return err
	}
	log.Info("verifying publisher signatures", "trusted_key_ids", c.KeyID)
	// Every port is bound before anything starts, so a taken one fails
	// fast and names itself.
	var upLn [2]net.Listener
	for i, name := range []string{"A", "B"} {
		if upLn[i], err = c.listen("UpstreamPorts", "upstream "+name, cfg.UpstreamPorts[i]); err != nil {
			return err
		}
	}
	cnLn, err := c.listen("CacheNodePort", "cache node", cfg.CacheNodePort)
	if err != nil {
		return err
	}
	pubLn, err := c.listen("PublisherPort", "publisher API", cfg.PublisherPort)
	if err != nil {
		return err
	}
	var sLn, admLn [3]net.Listener
	for i, p := range cfg.SentinelPorts {
		name := fmt.Sprintf("sentinel-%d", i+1)
		if sLn[i], err = c.listen("SentinelPorts", name, p); err != nil {
			return err
		}
		if admLn[i], err = c.listen("SentinelPorts", name+" admin", adminPort(p)); err != nil {
			return err
		}
	}

	for i, name := range []string{"A", "B"} {
		c.Upstreams[i] = "http://" + upLn[i].Addr().String()
		c.serve(upLn[i], exampleUpstream(name))
	}

	tm := cfg.Timing
	if tm == (origin.Timing{}) {
		tm = origin.LocalTiming()
	}
	// The cache node: the regional tier, in front of the directory origin.
	cnCfg := cachenode.DefaultConfig()
	cnCfg.Origin = c.Store
	cnCfg.WriteToken = cfg.Token
	cnCfg.Logger = log.With("component", "cachenode")
	cnCfg.Registerer = prometheus.NewRegistry()
	// sentinel-3 reads the log through the node: the shared read's age adds
	// to the publish budget and skew inside its settle (origin.Timing).
	cnCfg.Timing = tm
	if verifier != nil {
		cnCfg.Verifier = verifier
	}
	if c.CacheNode, err = cachenode.New(cnCfg); err != nil {
		return err
	}
	c.CacheURL = "http://" + cnLn.Addr().String()
	c.serve(cnLn, c.CacheNode)

	// Three sentinels, one gossip cluster; the cache node joins it too.
	var seeds []string
	for i := 0; i < 3; i++ {
		var store origin.Store = c.Store
		if i == 2 {
			if store, err = httporigin.New(httporigin.Config{Nodes: []string{c.CacheURL}, Fallback: c.Store, Token: cfg.Token, Logger: log}); err != nil {
				return err
			}
		}
		g := gossip.DefaultLocalConfig()
		g.Insecure = true // dev mode: loopback only
		g.Name = fmt.Sprintf("sentinel-%d", i+1)
		if cfg.WrapOrigin != nil {
			store = cfg.WrapOrigin(g.Name, store)
		}
		g.BindAddr = hostPort(cfg.Host, 0)
		g.Region = "dev"
		g.Seeds = seeds
		reg := prometheus.NewRegistry()
		node, err := dataplane.Open(ctx, dataplane.Config{
			Origin:     store,
			Gossip:     &g.Cluster,
			Timing:     tm,
			Verifier:   verifier,
			Staleness:  cfg.Staleness,
			DataDir:    filepath.Join(cfg.DataDir, g.Name),
			Logger:     log.With("component", g.Name),
			Registerer: reg,
		})
		if err != nil {
			return err
		}
		c.Nodes = append(c.Nodes, node)
		seeds = []string{c.Nodes[0].GossipAddr()}
		srv, err := sentinel.Start(sentinel.ServerConfig{
			Node:          node,
			Listener:      sLn[i],
			AdminListener: admLn[i],
			AdminToken:    cfg.Token,
			Logger:        log.With("component", g.Name),
			Registerer:    reg,
		})
		if err != nil {
			return err
		}
		c.Sentinels = append(c.Sentinels, srv)
	}
	g := gossip.DefaultLocalConfig()
	g.Insecure = true // dev mode: loopback only
	g.Name, g.BindAddr, g.Region, g.Seeds = "cachenode-1", hostPort(cfg.Host, 0), "dev", seeds
	g.Logger = log.With("component", "cachenode-gossip")
	g.Verifier = verifier
	fc := follow.LocalConfig()
	fc.Interval, fc.Settle = tm.LogInterval, tm.LogSettle
	fc.Logger = log.With("component", "cachenode-follow")
	if verifier != nil {
		fc.Verifier = verifier
	}
	if c.cacheLog, err = follow.New(fc, c.CacheNode, c.Store); err != nil {
		return err
	}
	if c.cacheGN, err = gossip.New(g, c.CacheNode, c.cacheLog); err != nil {
		return err
	}

	// The publisher hands every change to sentinel-1's gossip node.
	pcfg := publisher.DefaultConfig()
	pcfg.Notifier = c.Nodes[0]
	pcfg.Logger = log.With("component", "publisher")
	pcfg.Signer = signer
	pcfg.Namespaces = []string{sentinel.RoutesNamespace, sentinel.KeysNamespace}
	pcfg.Timing = tm
	pcfg.IssueCheckpoints = true
	pubReg := prometheus.NewRegistry()
	pcfg.Registerer = pubReg
	if cfg.CheckpointsFromOriginOnly {
		// The node without its PushCheckpoint: the publisher finds none.
		pcfg.Notifier = noCheckpointPush{c.Nodes[0]}
	}
	if c.Publisher, err = publisher.New(c.Store, pcfg); err != nil {
		return err
	}
	// It holds the signing key, so it issues the namespaces' checkpoints.
	ckptCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stopCheckpoints, c.ckptDone = stop, make(chan struct{})
	go func() {
		defer close(c.ckptDone)
		_ = c.Publisher.RunCheckpoints(ckptCtx) // logged inside
	}()
	c.PublishURL = "http://" + pubLn.Addr().String()
	c.serve(pubLn, admin.PublisherHandler(publisher.Handler(c.Publisher, cfg.Token), admin.Config{
		Gatherer: pubReg,
		Token:    cfg.Token,
		Fleet:    sentinel.FleetFunc(c.Nodes[0]), // the node it publishes through
	}))

	if err := c.seed(ctx); err != nil {
		return fmt.Errorf("example data: %w", err)
	}
	return nil
}

// noCheckpointPush is a node as a publisher's Notifier that pushes no
// checkpoints (Config.CheckpointsFromOriginOnly) but still waits for
// receipts.
type noCheckpointPush struct{ n *dataplane.Node }

var (
	_ publisher.Receipter    = noCheckpointPush{}
	_ publisher.ShareChecker = noCheckpointPush{}
)

func (x noCheckpointPush) Publish(ctx context.Context, rec record.Record) error {
	return x.n.Publish(ctx, rec)
}

func (x noCheckpointPush) Receipt(ctx context.Context, ns, key string, v record.Version, share float64) (gossip.Receipt, error) {
	return x.n.Receipt(ctx, ns, key, v, share)
}

func (x noCheckpointPush) CheckShare(share float64) error { return x.n.CheckShare(share) }

func hostPort(host string, port int) string { return net.JoinHostPort(host, fmt.Sprint(port)) }

func adminPort(p int) int { return p + 1000 }

// listen binds port (any free one with AnyPorts); an error is a
// *ListenError naming field and what.
func (c *Cluster) listen(field, what string, port int) (net.Listener, error) {
	if c.cfg.AnyPorts {
		port = 0
	}
	addr := hostPort(c.cfg.Host, port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Field: field, What: what, Addr: addr, Err: err}
	}
	c.listeners = append(c.listeners, ln)
	return ln, nil
}

func (c *Cluster) serve(ln net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	c.servers = append(c.servers, s)
	go s.Serve(ln)
}

// seed writes the example routes and keys, and waits until every sentinel
// knows them: routes and keys are complete namespaces, answered from each
// node's version index, so the guide's first request must not race the
// seeds' gossip.
func (c *Cluster) seed(ctx context.Context) error {
	var written []record.Record
	put := func(ns, key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		rec, err := c.Publisher.Put(ctx, ns, key, b)
		written = append(written, rec)
		return err
	}
	defer func() {
		deadline := time.Now().Add(10 * time.Second)
		for _, n := range c.Nodes {
			for _, r := range written {
				for time.Now().Before(deadline) {
					if k, ok := n.Known(r.Namespace, r.Key); ok && k.Version >= r.Version {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}
	}()
	if err := put(sentinel.RoutesNamespace, OpenHost, sentinel.Route{DeploymentID: "dep_hello", Upstreams: []string{c.Upstreams[0]}}); err != nil {
		return err
	}
	if err := put(sentinel.RoutesNamespace, APIHost, sentinel.Route{DeploymentID: "dep_api", Upstreams: []string{c.Upstreams[0]}, RequireKey: true, Keyspace: Keyspace}); err != nil {
		return err
	}
	if err := put(sentinel.KeysNamespace, sentinel.KeyRecordKey(Keyspace, GoodKey), sentinel.APIKey{KeyID: "key_dev_good", Enabled: true, Permissions: []string{"read"}}); err != nil {
		return err
	}
	return put(sentinel.KeysNamespace, sentinel.KeyRecordKey(Keyspace, DisabledKey), sentinel.APIKey{KeyID: "key_dev_disabled", Enabled: false})
}

// devKeys loads the publisher's signing key from DataDir/signing.key,
// generating it (and signing.pub) on the first start, and returns the
// signer and a verifier trusting it.
func (c *Cluster) devKeys() (*sign.Signer, *sign.Verifier, error) {
	c.SigningKeyFile = filepath.Join(c.cfg.DataDir, "signing.key")
	if _, err := os.Stat(c.SigningKeyFile); errors.Is(err, fs.ErrNotExist) {
		pub, priv, err := sign.GenerateKey()
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(c.SigningKeyFile, []byte(sign.EncodePrivateKey(priv)+"\n"), 0o600); err != nil {
			return nil, nil, fmt.Errorf("dev signing key: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.cfg.DataDir, "signing.pub"), []byte(sign.EncodePublicKey(pub)+"\n"), 0o644); err != nil {
			return nil, nil, fmt.Errorf("dev signing key: %w", err)
		}
	}
	signer, err := sign.LoadSigner(c.SigningKeyFile)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := sign.NewVerifier(signer.Public())
	if err != nil {
		return nil, nil, err
	}
	c.PublicKey = sign.EncodePublicKey(signer.Public())
	c.KeyID = signer.KeyID().String()
	return signer, verifier, nil
}

// exampleUpstream answers with its name, the path and the verified key id.
func exampleUpstream(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hello from upstream %s: %s %s", name, r.Method, r.URL.Path)
		if id := r.Header.Get("X-Dataplane-Key-Id"); id != "" {
			fmt.Fprintf(w, " (key %s)", id)
		}
		fmt.Fprintln(w)
	})
}

// PrintGuide writes the addresses in use, gossip included, a line of shell
// variables to paste, and ready-to-paste commands for trying the cluster.
func (c *Cluster) PrintGuide(w io.Writer) {
	s := func(i int) string { return "http://" + c.Sentinels[i].Addr() }
	routeB, _ := json.Marshal(sentinel.Route{DeploymentID: "dep_api_v2", Upstreams: []string{c.Upstreams[1]}, RequireKey: true, Keyspace: Keyspace})
	var ports []string
	for _, srv := range c.Sentinels {
		_, p, _ := net.SplitHostPort(srv.Addr())
		ports = append(ports, p)
	}
	fmt.Fprintf(w, `
dataplane dev is running (data in %s)

  sentinels      %s  %s  %s   (admin %s, %s, %s)
  publisher API  %s   (token %q)
  cache node     %s   (sentinel-3 reads through it)
  upstreams      A %s   B %s
  gossip         %s
  fleet page     %s   (sentinel-1's view of every member; the token becomes a cookie)
  signing        records signed with %s (public key %s);
                 every node verifies them, trusting key id %s only

The addresses as shell variables (the README's commands use them):
  %s

A request with a good API key (200, from upstream A):
  curl -H 'Host: %s' -H 'Authorization: Bearer %s' %s/hello

The same with a wrong key (401) and a disabled key (403):
  curl -H 'Host: %s' -H 'Authorization: Bearer wrong' %s/hello
  curl -H 'Host: %s' -H 'Authorization: Bearer %s' %s/hello

Change the route to upstream B:
  curl -X PUT -H 'Authorization: Bearer %s' --data '%s' %s/v1/records/routes/%s

and watch it reach all three sentinels:
  for p in %s; do curl -s -H 'Host: %s' -H 'Authorization: Bearer %s' http://%s:$p/hello; done

What a sentinel holds for the route (version, age):
  curl -H 'Authorization: Bearer %s' http://%s/debug/records/routes/%s

Ctrl-C stops everything.
`,
		c.cfg.DataDir,
		s(0), s(1), s(2), c.Sentinels[0].AdminAddr(), c.Sentinels[1].AdminAddr(), c.Sentinels[2].AdminAddr(),
		c.PublishURL, c.cfg.Token, c.CacheURL, c.Upstreams[0], c.Upstreams[1],
		strings.Join(c.GossipAddrs(), "  "),
		c.FleetPageURL(),
		c.SigningKeyFile, c.PublicKey, c.KeyID,
		c.ShellVars(),
		APIHost, GoodKey, s(0),
		APIHost, s(0),
		APIHost, DisabledKey, s(0),
		c.cfg.Token, routeB, c.PublishURL, APIHost,
		strings.Join(ports, " "), APIHost, GoodKey, c.cfg.Host,
		c.cfg.Token, c.Sentinels[0].AdminAddr(), APIHost,
	)
}

// FleetPageURL returns the address of the fleet page (admin.Handler's
// /debug/fleet) on sentinel-1's admin listener, with the token to open it
// once in a browser: the page answers with a cookie and a redirect to
// itself without the token.
func (c *Cluster) FleetPageURL() string {
	return "http://" + c.Sentinels[0].AdminAddr() + "/debug/fleet?token=" + url.QueryEscape(c.cfg.Token)
}

// GossipAddrs returns each gossip member's name and address, "name=host:port":
// the three sentinels, then the cache node.
func (c *Cluster) GossipAddrs() []string {
	var out []string
	for i, n := range c.Nodes {
		if addr := n.GossipAddr(); addr != "" {
			out = append(out, fmt.Sprintf("sentinel-%d=%s", i+1, addr))
		}
	}
	if c.cacheGN != nil {
		out = append(out, "cachenode-1="+c.cacheGN.Addr())
	}
	return out
}

// ShellVars returns one `export` line setting DP_SENTINEL (sentinel-1's
// base URL), DP_SENTINEL_PORTS (the three gateway ports), DP_PUBLISHER,
// DP_UPSTREAM_B and DP_ADMIN (sentinel-1's admin address), for pasting
// into a shell before the README's commands.
func (c *Cluster) ShellVars() string {
	var ports []string
	for _, srv := range c.Sentinels {
		_, p, _ := net.SplitHostPort(srv.Addr())
		ports = append(ports, p)
	}
	return fmt.Sprintf("export DP_SENTINEL=http://%s DP_SENTINEL_PORTS='%s' DP_PUBLISHER=%s DP_UPSTREAM_B=%s DP_ADMIN=%s",
		c.Sentinels[0].Addr(), strings.Join(ports, " "), c.PublishURL, c.Upstreams[1], c.Sentinels[0].AdminAddr())
}

// Close stops everything, sentinels first. It is safe on a partly started
// cluster, and more than once.
func (c *Cluster) Close() { c.closeOnce.Do(c.close) }

func (c *Cluster) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range c.Sentinels {
		_ = s.Shutdown(ctx)
	}
	for _, n := range c.Nodes {
		_ = n.Close()
	}
	if c.cacheGN != nil {
		_ = c.cacheGN.Leave(time.Second)
		_ = c.cacheGN.Close()
	}
	if c.cacheLog != nil {
		_ = c.cacheLog.Close()
	}
	for _, s := range c.servers {
		_ = s.Shutdown(ctx)
	}
	for _, ln := range c.listeners {
		_ = ln.Close()
	}
	if c.CacheNode != nil {
		c.CacheNode.Close()
	}
	if c.stopCheckpoints != nil {
		c.stopCheckpoints()
		<-c.ckptDone
	}
}
