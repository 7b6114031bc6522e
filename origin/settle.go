package origin

import (
	"errors"
	"fmt"
	"time"
)

// Timing gathers the timing constants of the write and read paths that must
// agree, so that one function (Validate) checks them together. Publishers
// (publisher.Config.Timing) and nodes (dataplane.Config.Timing) take the
// same struct: give both sides the same value (a preset, DefaultTiming,
// WANTiming or LocalTiming, changed where needed), and each refuses to
// start with a set that breaks a rule. The rule readers of the change log
// rely on:
//
//	A change whose version was taken at wall time t is in the change log by
//	t + PublishBudget, or its publish is never acknowledged (it is retried
//	under a fresh version, or fails). A node that read the whole log at
//	time T therefore knows every change with a version at or below
//	T - PublishBudget - ClockSkew (later still when it reads a replica or
//	a cache tier's shared read, ReplicaLag and LogTailTTL), and may move
//	its log cursor there (LogSettle), and a snapshot that claims every
//	change up to its version must keep that version as far behind the
//	clock.
//
// A crash between a publish's record write and its log append breaks the
// first half of the rule for one change; the publisher's repair pass finds
// it through the store's Pending notes and publishes it again under a fresh
// version, which restores the rule for that value.
type Timing struct {
	// PublishBudget is the longest a publisher lets a write run from taking
	// its version to the change-log append before giving that version up.
	// Flag: -publish-budget.
	PublishBudget time.Duration
	// ClockSkew is the most any publisher's clock may differ from any
	// reader's. It also bounds a publisher's clock against the origin's
	// (S3 and DynamoDB tell their time): a publisher provably further off
	// refuses to write (publisher.ErrClockOffset), since readers assume
	// clocks within ClockSkew; and it sets how far ahead of a node's clock
	// a version may be (MaxFutureSkew). Flag: -clock-skew.
	ClockSkew time.Duration
	// LogInterval is how often nodes read the change log (with or without
	// gossip), and a publisher's checkpoint issuer too (at most every
	// second; its repair pass runs every 2 LogInterval). Flag:
	// -log-interval.
	LogInterval time.Duration
	// LogSettle is how far behind the time of a complete log read a reader
	// moves its cursor. Flag: -log-settle.
	LogSettle time.Duration
	// SnapshotLag is how far behind the wall clock a publisher keeps a
	// snapshot's version.
	SnapshotLag time.Duration
	// LogRetention is how much change log, in version time, a publisher
	// keeps below the oldest snapshot; 0 never trims. Flag: -log-retention.
	LogRetention time.Duration
	// ReplicaLag is the longest a regional replica's change log trails the
	// primary's (origin/replica, Global Tables, bucket replication); 0
	// when readers read the primary. Readers of a replica see an entry that
	// much later, so their LogSettle must cover it too. Flag: -replica-lag.
	ReplicaLag time.Duration
	// LogTailTTL is how long one cache node's change-log read answers its
	// region's readers (cachenode); an answer may miss changes appended up
	// to that long before, so readers' LogSettle must cover it too. Zero:
	// every read reaches the origin. Flag: -log-tail-ttl.
	LogTailTTL time.Duration
	// CheckpointLifetime is how long a publisher's signed checkpoint proves
	// anything; it is renewed before half of it has passed. Zero: no
	// checkpoints are issued. Nodes check it against each fail-closed
	// namespace's D. Flag: -checkpoint-lifetime.
	CheckpointLifetime time.Duration
}

// DefaultSnapshotLag is the SnapshotLag of the presets.
const DefaultSnapshotLag = 5 * time.Second

// MinFutureSkew is the least MaxFutureSkew allows a version ahead of a
// node's clock, whatever ClockSkew.
const MinFutureSkew = 5 * time.Second

// ClockDateUncertainty is how far behind the origin's clock the time it
// tells (an HTTP Date) may read: one second of resolution, and one more for
// servers that cache their Date header for up to a second (versitygw, over
// fasthttp: on one host, its Date read 0.9 s behind the second this host's
// clock was in). A publisher's clock check counts it in the clock's favour.
const ClockDateUncertainty = 2 * time.Second

// MaxFutureSkew is how far ahead of a node's clock a version may be before
// the node refuses it, from every path (DESIGN.md decision 8): ClockSkew +
// ClockDateUncertainty (a publisher passes its clock check up to that far
// ahead of the origin), and at least MinFutureSkew (5 s, the presets').
func (t Timing) MaxFutureSkew() time.Duration {
	return max(MinFutureSkew, t.ClockSkew+ClockDateUncertainty)
}

// DefaultTiming returns the timing of one data center: writes in the log
// within 1 s of taking their version, clocks within 250 ms (and a
// publisher's within 250 ms of the origin's, so versions up to 5 s ahead
// accepted), the log read every 5 s and settled 2 s behind, a day of log kept
// behind the snapshots, cache nodes sharing a log read for 250 ms,
// checkpoints living 5 minutes (the default D of a namespace that fails
// closed).
func DefaultTiming() Timing {
	return Timing{
		PublishBudget:      time.Second,
		ClockSkew:          250 * time.Millisecond,
		LogInterval:        5 * time.Second,
		LogSettle:          2 * time.Second,
		SnapshotLag:        DefaultSnapshotLag,
		LogRetention:       24 * time.Hour,
		LogTailTTL:         250 * time.Millisecond,
		CheckpointLifetime: 5 * time.Minute,
	}
}

// WANTiming returns DefaultTiming with a settle of 3 s, for publishers and
// readers spread over regions.
func WANTiming() Timing {
	t := DefaultTiming()
	t.LogSettle = 3 * time.Second
	return t
}

// LocalTiming returns the timing of everything on one machine (tests, the
// dev mode): writes in the log within 400 ms, clocks within 50 ms, the log
// read every second and settled 500 ms behind, cache nodes sharing a log
// read for 50 ms.
func LocalTiming() Timing {
	t := DefaultTiming()
	t.PublishBudget = 400 * time.Millisecond
	t.ClockSkew = 50 * time.Millisecond
	t.LogInterval = time.Second
	t.LogSettle = 500 * time.Millisecond
	t.LogTailTTL = 50 * time.Millisecond
	return t
}

// ErrTiming is wrapped by every error Validate returns.
var ErrTiming = errors.New("inconsistent timing")

// Validate checks that the constants agree, and reports every rule broken
// in one error (wrapping ErrTiming) that names the constants, their values
// and the rule:
//   - PublishBudget is positive; no constant is negative;
//   - LogSettle >= PublishBudget + ClockSkew + ReplicaLag + LogTailTTL, or
//     readers move past changes still allowed to arrive;
//   - SnapshotLag >= PublishBudget + ClockSkew, or a snapshot claims changes
//     still allowed to arrive;
//   - LogRetention is 0 (never trim) or SnapshotLag + LogRetention is at
//     least 2 * LogSettle: the log is trimmed at most to the oldest
//     snapshot's version minus LogRetention, and that point must stay two
//     settle windows behind the clock, or a node whose cursor is one settle
//     window behind finds its log trimmed and reloads everything;
//   - CheckpointLifetime is 0 (no checkpoints) or more than
//     2 * (PublishBudget + ClockSkew): a checkpoint is renewed before half
//     of its lifetime, and its version trails its issue by that much.
//
// LogInterval may be 0 on a publisher's side (its checkpoint issuer then
// reads the log every second, its repair pass runs every 10 s); a node
// (dataplane.Open) needs it positive and checks it, with its fail-closed
// bounds, on top of these.
func (t Timing) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if t.PublishBudget <= 0 {
		bad("PublishBudget=%s must be positive", t.PublishBudget)
	}
	for _, c := range []struct {
		name string
		d    time.Duration
	}{
		{"ClockSkew", t.ClockSkew},
		{"LogInterval", t.LogInterval}, {"LogSettle", t.LogSettle}, {"SnapshotLag", t.SnapshotLag},
		{"LogRetention", t.LogRetention}, {"ReplicaLag", t.ReplicaLag}, {"LogTailTTL", t.LogTailTTL},
		{"CheckpointLifetime", t.CheckpointLifetime},
	} {
		if c.d < 0 {
			bad("%s=%s must not be negative", c.name, c.d)
		}
	}
	need := t.PublishBudget + t.ClockSkew
	if t.LogSettle < need+t.ReplicaLag+t.LogTailTTL {
		bad("LogSettle=%s < PublishBudget=%s + ClockSkew=%s + ReplicaLag=%s + LogTailTTL=%s: readers would move their cursor past changes still arriving",
			t.LogSettle, t.PublishBudget, t.ClockSkew, t.ReplicaLag, t.LogTailTTL)
	}
	if t.SnapshotLag < need {
		bad("SnapshotLag=%s < PublishBudget=%s + ClockSkew=%s: snapshots would claim changes still arriving", t.SnapshotLag, t.PublishBudget, t.ClockSkew)
	}
	if t.LogRetention > 0 && t.SnapshotLag+t.LogRetention < 2*t.LogSettle {
		bad("SnapshotLag=%s + LogRetention=%s < 2 * LogSettle=%s: a reader one settle window behind would find its log trimmed (LogRetention=0 never trims)",
			t.SnapshotLag, t.LogRetention, t.LogSettle)
	}
	if t.CheckpointLifetime > 0 && t.CheckpointLifetime <= 2*need {
		bad("CheckpointLifetime=%s <= 2 * (PublishBudget=%s + ClockSkew=%s): a checkpoint would expire before its renewal's version is settled",
			t.CheckpointLifetime, t.PublishBudget, t.ClockSkew)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrTiming, errors.Join(errs...))
	}
	return nil
}
