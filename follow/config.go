package follow

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/record"
	"github.com/dataplane/dataplane/sign"
)

// Verifier checks publisher signatures; *sign.Verifier implements it.
type Verifier interface {
	VerifyRecord(record.Record) error
	VerifyChange(record.Change) error
}

var _ Verifier = (*sign.Verifier)(nil)

// Config configures a Follower. Start from DefaultConfig, WANConfig or
// LocalConfig.
type Config struct {
	// Interval is how often the log is read. It is also read at start
	// (with Resume), and whenever CatchUp asks (a gossip member rejoining,
	// a digest showing a gap).
	Interval time.Duration

	// Settle is how far behind a complete read's time the cursor moves, so
	// that changes appended slightly out of version order by concurrent
	// publishers are read again: at least the longest time between a
	// publisher taking a version and appending it, plus clock skew between
	// nodes (origin.Timing.LogSettle).
	Settle time.Duration

	// Batch is the most changes asked of the log in one read.
	Batch int

	// Resume is the version up to which the Target is known to be current,
	// for a node restarted with the state it kept or loaded from a snapshot
	// (see Follower.Cursor); the log is read from there at start. 0: the
	// log is read from now less Settle.
	Resume record.Version

	// Verifier, when set, makes the follower hand on only changes signed
	// by a trusted publisher key (their Seal travels in the log entry);
	// the others are refused and counted. Nil: everything is handed on.
	Verifier Verifier

	// Checkpoints, when set, is where the follower reads the latest
	// signed checkpoint of each namespace a CheckpointTaker Target names,
	// before each read of the log, and hands them to it after the read
	// succeeded: how checkpoints travel "with the log". Nil: the Log, if
	// it also is an origin.SnapshotParts (every origin store is).
	Checkpoints origin.SnapshotParts

	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Logger receives the follower's logs; nil means slog.Default().
	Logger *slog.Logger

	// Registerer receives the follower's metrics (dataplane_follow_*);
	// nil registers none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the settings for nodes in one data center: a read
// every 5 s, a settle of 2 s (the publisher's default PublishBudget plus
// ClockSkew, with room), pages of 1000 changes.
func DefaultConfig() Config {
	return Config{Interval: 5 * time.Second, Settle: 2 * time.Second, Batch: 1000}
}

// WANConfig returns DefaultConfig with a settle of 3 s, for publishers and
// readers spread over regions.
func WANConfig() Config {
	c := DefaultConfig()
	c.Settle = 3 * time.Second
	return c
}

// LocalConfig returns the settings for nodes on one machine (tests, the dev
// mode): a read every second, a settle of 500 ms.
func LocalConfig() Config {
	c := DefaultConfig()
	c.Interval = time.Second
	c.Settle = 500 * time.Millisecond
	return c
}

// withDefaults fills the fields whose zero value has a documented meaning.
func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every setting out of range, in one error.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("log interval %s must be positive", c.Interval))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("log settle %s must not be negative", c.Settle))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("log batch %d must be positive", c.Batch))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	return nil
}
