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

// DefaultOriginTimeout bounds each forwarded write, log or snapshot call when
// Config.OriginTimeout is zero. Record reads are bounded by the cache's
// RefreshTimeout instead.
const DefaultOriginTimeout = 10 * time.Second

// DefaultLogTailSpan is Config.LogTailSpan when left zero.
const DefaultLogTailSpan = 10 * time.Second

// Defaults of the checkpoint parts' shared reads (Config.CheckpointTTL,
// ProofTTL).
const (
	// DefaultCheckpointTTL matches origin.DefaultTiming's LogTailTTL: readers take the
	// latest checkpoint with each log read, and a checkpoint up to 250 ms
	// older than the origin's costs them nothing (a match proves freshness
	// as of the checkpoint's version, which trails the clock by the
	// publisher's LogSettle anyway).
	DefaultCheckpointTTL = 250 * time.Millisecond
	// DefaultProofTTL: a snapshot's proof changes only when the publisher
	// re-signs it (a new key, or a new checkpoint at the same version).
	DefaultProofTTL = 30 * time.Second
)

// Config configures a Server. Start from DefaultConfig and set Origin and
// WriteToken.
type Config struct {
	// Origin is the store behind the node, read through the cache and
	// written through directly. Required.
	Origin origin.Store
	// Cache configures the node's cache; the zero value means
	// cache.DefaultConfig(). Its clock, verifier, metrics and logs are this
	// Config's Now, Verifier, Registerer and Logger.
	Cache cache.Config
	// Verifier, when set, makes the node refuse records (writes, origin
	// reads, gossip values) whose publisher signature does not verify;
	// signatures pass through untouched either way; with Gossip, gossip
	// and the change log are checked too. It also makes the node serve
	// only checkpoints and snapshot proofs signed by a trusted key (not
	// from the future; expiry is its readers' to judge), so a bucket
	// writer's forgery cannot hold back the real ones. Nil: the node
	// checks that each decodes as what it is named and is not from the
	// future (Timing.MaxFutureSkew), and passes the signature on to its
	// readers, who verify it either way.
	Verifier *sign.Verifier
	// Now is the cache's clock (tests inject a fake one); nil means the
	// wall clock.
	Now func() time.Time
	// WriteToken guards every write: PUT records and snapshots, POST log
	// and trim ("Authorization: Bearer <token>"). Empty refuses every write
	// (403): a node is never writable by accident.
	WriteToken string
	// ReadToken, when set, guards reads too. Empty leaves reads open: they
	// are the regional data path, inside the region's network.
	ReadToken string
	// MaxSnapshotSize bounds a PUT snapshot body, in bytes; zero means
	// wire.DefaultMaxSnapshotSize.
	MaxSnapshotSize int64
	// OriginTimeout bounds each forwarded write, log or snapshot call; zero
	// means DefaultOriginTimeout.
	OriginTimeout time.Duration
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
	// Validate checks; zero: every request reads the origin), and, with
	// Gossip, LogInterval and LogSettle are how the node follows the log
	// and MaxFutureSkew how far ahead a version may be. New refuses a set
	// that breaks a rule of origin.Timing.Validate.
	Timing origin.Timing
	// Gossip, when set, joins a gossip cluster: the node takes changes by
	// gossip and follows the change log (Timing), so its cache is told of
	// every change, and nodes reading through it get them within a second.
	// Nil: its cache learns of changes from its windows only.
	Gossip *gossip.Cluster
	// LogTailSpan is how far below the wall clock a shared read starts
	// when the request that starts it asks for less, so that readers
	// whose cursors are a little behind are answered from it too; zero
	// means DefaultLogTailSpan.
	LogTailSpan time.Duration
	// CheckpointTTL is how long one origin read of a namespace's latest
	// checkpoint answers the node's readers (GET
	// /v1/snapshots/{ns}/checkpoint); concurrent requests share one read.
	// Zero or negative: every request reads the origin (DefaultConfig sets
	// DefaultCheckpointTTL). Whatever it is, the node never answers a
	// checkpoint older than one it has read (see the package doc).
	CheckpointTTL time.Duration
	// ProofTTL is CheckpointTTL for snapshot proofs (GET
	// /v1/snapshots/{ns}/ckpt-<version>); DefaultConfig sets
	// DefaultProofTTL.
	ProofTTL time.Duration
	// Registerer receives the node's and its cache's metrics; nil registers
	// none.
	Registerer prometheus.Registerer
	// Logger receives origin failures and corrupt objects; nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the cache's default windows (10 s fresh,
// a day stale), the default limits, origin.DefaultTiming (change-log reads
// shared for 250 ms), checkpoint reads shared for DefaultCheckpointTTL and
// DefaultProofTTL, no gossip, and no origin or tokens yet.
func DefaultConfig() Config {
	return Config{
		Cache:           cache.DefaultConfig(),
		MaxSnapshotSize: wire.DefaultMaxSnapshotSize,
		OriginTimeout:   DefaultOriginTimeout,
		Timing:          origin.DefaultTiming(),
		LogTailSpan:     DefaultLogTailSpan,
		CheckpointTTL:   DefaultCheckpointTTL,
		ProofTTL:        DefaultProofTTL,
	}
}

// validate reports the first bad field of c and fills in defaults.
func (c *Config) validate() error {
	if c.Origin == nil {
		return errors.New("cachenode: Config.Origin is required")
	}
	if c.MaxSnapshotSize < 0 {
		return fmt.Errorf("cachenode: Config.MaxSnapshotSize must not be negative, got %d", c.MaxSnapshotSize)
	}
	if c.OriginTimeout < 0 {
		return fmt.Errorf("cachenode: Config.OriginTimeout must not be negative, got %v", c.OriginTimeout)
	}
	if c.LogTailSpan < 0 {
		return fmt.Errorf("cachenode: Config.LogTailSpan must not be negative, got %v", c.LogTailSpan)
	}
	if c.Timing == (origin.Timing{}) {
		c.Timing = origin.DefaultTiming()
	}
	if err := c.Timing.Validate(); err != nil {
		return fmt.Errorf("cachenode: Config.Timing: %w", err)
	}
	if c.LogTailSpan == 0 {
		c.LogTailSpan = DefaultLogTailSpan
	}
	if c.MaxSnapshotSize == 0 {
		c.MaxSnapshotSize = wire.DefaultMaxSnapshotSize
	}
	if c.OriginTimeout == 0 {
		c.OriginTimeout = DefaultOriginTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Cache.IsZero() {
		c.Cache = cache.DefaultConfig()
	}
	return nil
}
