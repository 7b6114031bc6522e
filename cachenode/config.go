package cachenode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/cache"
	"github.com/dataplane/dataplane/gossip"
	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/sign"
)

// originTimeout bounds each forwarded write, log or snapshot call. Record
// reads are bounded by the cache's RefreshTimeout instead.
const originTimeout = 10 * time.Second

// logTailSpan is how far below the wall clock a shared change-log read
// starts when the request that starts it asks for less, so that readers
// whose cursors are a little behind are answered from it too.
const logTailSpan = 10 * time.Second

// defaultProofTTL is the proofTTL of a Timing without checkpoints
// (CheckpointLifetime 0).
const defaultProofTTL = 30 * time.Second

// Config configures a Server. Start from DefaultConfig and set Origin and
// WriteToken.
type Config struct {
	// Origin is the store behind the node, read through the cache and
	// written through directly. Required.
	Origin origin.Store
	// Cache configures the node's cache; the zero value means
	// cache.DefaultConfig(). Its verifier, metrics and logs are this
	// Config's Verifier, Registerer and Logger.
	Cache cache.Config
	// Verifier, when set, makes the node refuse records (writes, origin
	// reads, gossip values) whose publisher signature does not verify;
	// signatures pass through untouched either way; with Gossip, gossip
	// and the change log are checked too. It also makes the node serve
	// only checkpoints and snapshot proofs signed by a trusted key (not
	// from the future; expiry is its readers' to judge), so a bucket
	// writer's forgery cannot hold back the real ones. Nil: the node
	// checks that each decodes as what it is named and is not from the
	// future (Timing.MaxFutureSkew()), and passes the signature on to its
	// readers, who verify it either way.
	Verifier *sign.Verifier
	// WriteToken guards every write: PUT records and snapshots, POST log
	// and trim ("Authorization: Bearer <token>"). Empty refuses every write
	// (403): a node is never writable by accident.
	WriteToken string
	// ReadToken, when set, guards reads too. Empty leaves reads open: they
	// are the regional data path, inside the region's network.
	ReadToken string
	// Timing holds the timing constants the node shares with the
	// publishers and readers of its origin (origin.Timing; the zero value
	// means origin.DefaultTiming()): LogTailTTL is how long one origin
	// change-log read answers the node's log readers (concurrent GET
	// /v1/log requests share one origin read, and a request up to
	// LogTailTTL after a read started is answered from it when its cursor
	// is at or above that read's, so the N sentinels of a region polling
	// the log cost about one origin read per LogTailTTL instead of N per
	// poll interval; an answer may miss changes appended up to LogTailTTL
	// before the request, so readers' LogSettle must cover it, which
	// Validate checks; zero: every request reads the origin), and also how
	// long one origin read of a namespace's latest checkpoint answers the
	// node's readers (GET /v1/snapshots/{ns}/checkpoint; readers take it
	// with each log read, and a match proves freshness only as of the
	// checkpoint's version, which trails the clock by the publisher's
	// LogSettle anyway; whatever the TTL, the node never answers a
	// checkpoint older than one it has read, see the package doc); one
	// read of a snapshot proof (GET /v1/snapshots/{ns}/ckpt-<version>)
	// answers them for a tenth of CheckpointLifetime (30 s by default; a
	// proof changes only when the publisher re-signs it). With Gossip,
	// LogInterval and LogSettle are how the node follows the log and
	// MaxFutureSkew() how far ahead a version may be. New refuses a set
	// that breaks a rule of origin.Timing.Validate.
	Timing origin.Timing
	// Gossip, when set, joins a gossip cluster: the node takes changes by
	// gossip and follows the change log (Timing), so its cache is told of
	// every change, and nodes reading through it get them within a second.
	// Nil: its cache learns of changes from its windows only.
	Gossip *gossip.Cluster
	// Registerer receives the node's and its cache's metrics; nil registers
	// none.
	Registerer prometheus.Registerer
	// Logger receives origin failures and corrupt objects; nil means
	// slog.Default().
	Logger *slog.Logger

	// Set by tests only (export_test.go).
	now         func() time.Time // the cache's, gossip's and follower's clock; nil: the wall clock
	maxSnapshot int64            // PUT snapshot body bound; 0: wire.DefaultMaxSnapshotSize
	tailSpan    time.Duration    // 0: logTailSpan
	ckptTTL     time.Duration    // 0: from Timing; negative: every request reads
	proofTTL    time.Duration    // 0: from Timing; negative: every request reads
}

// checkpointTTL is how long one origin read of a latest checkpoint answers
// the node's readers: Timing.LogTailTTL, as a log read's.
func (c *Config) checkpointTTL() time.Duration {
	if c.ckptTTL != 0 {
		return c.ckptTTL
	}
	return c.Timing.LogTailTTL
}

// snapshotProofTTL is how long one origin read of a snapshot proof answers
// the node's readers: a tenth of Timing.CheckpointLifetime, or
// defaultProofTTL without checkpoints.
func (c *Config) snapshotProofTTL() time.Duration {
	switch {
	case c.proofTTL != 0:
		return c.proofTTL
	case c.Timing.CheckpointLifetime > 0:
		return c.Timing.CheckpointLifetime / 10
	}
	return defaultProofTTL
}

// DefaultConfig returns a Config with the cache's default windows (10 s fresh,
// a day stale), origin.DefaultTiming (change-log and checkpoint reads
// shared for 250 ms, snapshot proofs for 30 s), no gossip, and no origin or
// tokens yet. Forwarded writes, log and snapshot calls are bounded to 10 s,
// and a PUT snapshot body to wire.DefaultMaxSnapshotSize.
func DefaultConfig() Config {
	return Config{
		Cache:  cache.DefaultConfig(),
		Timing: origin.DefaultTiming(),
	}
}

// validate reports the first bad field of c and fills in defaults.
func (c *Config) validate() error {
	if c.Origin == nil {
		return errors.New("cachenode: Config.Origin is required")
	}
	if c.Timing == (origin.Timing{}) {
		c.Timing = origin.DefaultTiming()
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("cachenode: Config.Timing: %w", err)
	}
	if c.tailSpan == 0 {
		c.tailSpan = logTailSpan
	}
	if c.maxSnapshot == 0 {
		c.maxSnapshot = wire.DefaultMaxSnapshotSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Cache.IsZero() {
		c.Cache = cache.DefaultConfig()
	}
	return nil
}
