package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane"
	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin"
	"github.com/dataplane/dataplane/origin/originurl"
	"github.com/dataplane/dataplane/sign"
)

const envPrefix = "DATAPLANE_"

// nodeFlags are the flags of every command that runs a dataplane node.
type nodeFlags struct {
	config      string
	origin      string
	fallback    string
	originTLS   originTLSFlags
	originToken string
	originRead  string
	freshTTL    time.Duration
	staleTTL    time.Duration
	negativeTTL time.Duration
	cacheBytes  int64
	dataDir     string
	namespaces  cli.StringList
	trusted     string
	requireCkpt bool

	gossip    bool
	name      string
	region    string
	bind      string
	advertise string
	seeds     cli.StringList
	keys      cli.StringList
	wan       bool
	insecure  bool
	logLevel  string

	timing timingFlags
}

// register defines every node flag on fs.
func (f *nodeFlags) register(fs *flag.FlagSet) {
	f.registerOrigin(fs)
	f.registerCache(fs)
	f.registerGossip(fs)
	f.registerTiming(fs)
}

// registerTiming defines the timing flags (timingFlags), whose preset
// follows -wan.
func (f *nodeFlags) registerTiming(fs *flag.FlagSet) {
	f.timing.wan = &f.wan
	f.timing.register(fs)
}

// registerOrigin defines -config, -origin, -fallback-origin and -log-level.
func (f *nodeFlags) registerOrigin(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "JSON file of settings (keys are flag names)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.origin, "origin", "", "where records live: dir:///path, s3://bucket/prefix?endpoint=...&path-style=true,\ndynamodb://table?endpoint=..., or http://cache-node-1:8081,http://cache-node-2:8081 (required)")
	fs.StringVar(&f.fallback, "fallback-origin", "", "with an http:// cache-tier origin: the real origin to read when every cache node is down")
	fs.StringVar(&f.originToken, "origin-token", "", "with a cache-tier origin: the nodes' -write-token, sent on writes (prefer $DATAPLANE_ORIGIN_TOKEN)")
	fs.StringVar(&f.originRead, "origin-read-token", "", "with a cache-tier origin: the nodes' -read-token, sent on reads")
	f.originTLS.register(fs)
}

// registerCache defines the memory cache and local snapshot flags.
func (f *nodeFlags) registerCache(fs *flag.FlagSet) {
	fs.DurationVar(&f.freshTTL, "fresh-ttl", 10*time.Second, "how long a value is served without asking the origin")
	fs.DurationVar(&f.staleTTL, "stale-ttl", 24*time.Hour, "after fresh-ttl, how long a value is served at once while refreshed in the background")
	fs.DurationVar(&f.negativeTTL, "negative-ttl", 5*time.Second, "how long a not-found is remembered")
	fs.Int64Var(&f.cacheBytes, "cache-bytes", 256<<20, "memory bound of the record cache, in bytes")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for local snapshot files, used to start while the origin is down")
	fs.Var(&f.namespaces, "namespaces", "namespaces loaded whole at start (default routes,keys)")
	fs.StringVar(&f.trusted, "trusted-keys", "", "publisher public keys (base64 ed25519, from dataplane keygen) whose signatures this node accepts,\ncomma-separated, or file:PATH (one a line); list old and new while rotating. Empty: signing off, everything accepted;\na list or file holding no key (only comments) is an error")
	fs.BoolVar(&f.requireCkpt, "require-checkpoints", false, "with -trusted-keys: from the start, only a match with the publisher's signed checkpoints proves a namespace\ncurrent, and snapshots load only with a proof that verifies (set it where publishers issue checkpoints, as\npublish serve and sync do by default: without it, a node that never verified a checkpoint, a new one,\nkeeps the older rules, so deleting the checkpoints from the bucket turns the check off for it)")
}

// verifier parses -trusted-keys; nil (signing off) when it is empty. A
// list or file that holds no key (a file that is empty, or only comments)
// is an error: signing is turned off only by leaving the flag empty.
func (f *nodeFlags) verifier() (*sign.Verifier, error) {
	list := f.trusted
	path, isFile := strings.CutPrefix(list, "file:")
	if isFile {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageError{fmt.Errorf("-trusted-keys: %w", err)}
		}
		list = string(b)
	}
	v, err := sign.ParseTrusted(list)
	if err == nil && v == nil && isFile {
		err = sign.ErrNoTrustedKeys
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("-trusted-keys: %w", err)}
	}
	return v, nil
}

// logTrust says at start what the node's signature checks are: the ids of
// the keys it trusts, or a warning that signing is off.
func logTrust(log *slog.Logger, v *sign.Verifier) {
	if v == nil {
		log.Warn("signing off: -trusted-keys is empty, so records are accepted signed or not")
		return
	}
	ids := make([]string, 0, len(v.KeyIDs()))
	for _, id := range v.KeyIDs() {
		ids = append(ids, id.String())
	}
	slices.Sort(ids)
	log.Info("verifying publisher signatures", "trusted_key_ids", strings.Join(ids, ","))
}

// registerGossip defines the gossip cluster flags.
func (f *nodeFlags) registerGossip(fs *flag.FlagSet) {
	fs.BoolVar(&f.gossip, "gossip", true, "join a gossip cluster for sub-second invalidation (false: TTL only)")
	fs.StringVar(&f.name, "name", "", "unique node name in the gossip cluster (default: host name)")
	fs.StringVar(&f.region, "region", "default", "this node's region, for eager push across regions")
	fs.StringVar(&f.bind, "gossip-bind", "0.0.0.0:7946", "gossip listen address (UDP and TCP)")
	fs.StringVar(&f.advertise, "gossip-advertise", "", "gossip address other nodes dial, if not the bind address")
	fs.Var(&f.seeds, "seeds", "gossip addresses (host:port) of nodes to join, comma-separated; a DNS name joins every address it\nresolves to (e.g. a Kubernetes headless Service) and is resolved again whenever a node left alone retries its seeds")
	fs.Var(&f.keys, "gossip-key", "base64 AES key (16, 24 or 32 bytes) encrypting gossip; repeat for rotation, the first encrypts")
	fs.BoolVar(&f.wan, "wan", false, "use WAN gossip timers (nodes across regions)")
	fs.BoolVar(&f.insecure, "insecure", false, "allow gossip without encryption (refused otherwise)")
}

func (f *nodeFlags) logger(stderr interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("-log-level %q: want debug, info, warn or error", f.logLevel)}
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// openOrigin opens the -origin store (and -fallback-origin for a cache tier).
func (f *nodeFlags) openOrigin(ctx context.Context, log *slog.Logger) (origin.Store, error) {
	if f.origin == "" {
		return nil, usageError{fmt.Errorf("-origin is required")}
	}
	tlsCfg, err := f.originTLS.config()
	if err != nil {
		return nil, err
	}
	var fallback origin.Store
	if f.fallback != "" {
		fallback, err = originurl.Open(ctx, f.fallback, originurl.Options{Logger: log})
		if err != nil {
			return nil, usageError{fmt.Errorf("-fallback-origin: %w", err)}
		}
	}
	s, err := originurl.Open(ctx, f.origin, originurl.Options{
		Logger: log,
		OpenHTTP: func(nodes []string) (origin.Store, error) {
			return httporigin.New(httporigin.Config{
				Nodes: nodes, Fallback: fallback, Logger: log, TLS: tlsCfg,
				Token: f.originToken, ReadToken: f.originRead,
			})
		},
	})
	if err != nil {
		return nil, usageError{fmt.Errorf("-origin: %w", err)}
	}
	return s, nil
}

// cacheOptions builds the memory cache's options from the cache flags.
func (f *nodeFlags) cacheOptions() cache.Config {
	o := cache.DefaultConfig()
	o.Default = cache.Window{Fresh: f.freshTTL, Stale: f.staleTTL}
	o.NegativeTTL = f.negativeTTL
	o.MaxBytes = f.cacheBytes
	return o
}

// nodeConfig builds the node's configuration from the flags.
func (f *nodeFlags) nodeConfig(store origin.Store, log *slog.Logger, reg prometheus.Registerer) (dataplane.Config, error) {
	copts := f.cacheOptions()
	cfg := dataplane.Config{
		Origin:     store,
		Cache:      copts,
		DataDir:    f.dataDir,
		Namespaces: f.namespaces,
		Logger:     log,
		Registerer: reg,
	}
	v, err := f.verifier()
	if err != nil {
		return cfg, err
	}
	logTrust(log, v)
	cfg.Verifier = v
	if f.requireCkpt && v == nil {
		return cfg, usageError{errors.New("-require-checkpoints needs -trusted-keys: checkpoints are signed")}
	}
	cfg.RequireCheckpoints = f.requireCkpt
	cfg.Timing = f.timing.timing()
	if !f.gossip {
		return cfg, nil
	}
	g, err := f.gossipConfig()
	if err != nil {
		return cfg, err
	}
	cfg.Gossip = &g.Cluster
	return cfg, nil
}

// gossipConfig builds the gossip configuration from the flags.
func (f *nodeFlags) gossipConfig() (gossip.Config, error) {
	g := gossip.DefaultLANConfig()
	if f.wan {
		g = gossip.DefaultWANConfig()
	}
	if f.name != "" {
		g.Name = f.name
	}
	g.Region = f.region
	// Checked here too, so that a bad address is a usage error naming
	// its flag.
	if err := checkHostPort("-gossip-bind", f.bind); err != nil {
		return g, err
	}
	g.BindAddr = f.bind
	if f.advertise != "" {
		if err := checkHostPort("-gossip-advertise", f.advertise); err != nil {
			return g, err
		}
		g.AdvertiseAddr = f.advertise
	}
	g.Seeds = f.seeds
	g.Insecure = f.insecure
	for i, k := range f.keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return g, usageError{fmt.Errorf("-gossip-key #%d: not base64: %w", i+1, err)}
		}
		g.SecretKeys = append(g.SecretKeys, b)
	}
	if len(g.SecretKeys) == 0 && !f.insecure {
		return g, usageError{fmt.Errorf("gossip without encryption refused: set -gossip-key (e.g. $(head -c32 /dev/urandom | base64)) or pass -insecure, or -gossip=false for TTL-only")}
	}
	return g, nil
}

// checkHostPort checks that the flag's addr is a host:port.
func checkHostPort(flagName, addr string) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("%s %q: %w", flagName, addr, err)}
	}
	if port, err := strconv.Atoi(p); err != nil || port < 0 || port > 65535 {
		return usageError{fmt.Errorf("%s %q: bad port", flagName, addr)}
	}
	return nil
}
