package origin

import (
	"errors"
	"fmt"
	"time"
)

// Timing gathers the timing constants of the write and read paths that must
// agree, so that one function (Validate) checks them together. The rule they
// encode, which readers of the change log rely on:
//
//	A change whose version was taken at wall time t is in the change log by
//	t + PublishBudget, or its publish is never acknowledged (it is retried
//	under a fresh version, or fails). A node that read the whole log at
//	time T therefore knows every change with a version at or below
//	T - PublishBudget - ClockSkew, and may move its log cursor there
//	(gossip.Config.LogSettle), and a snapshot that claims every change up
//	to its version must keep that version as far behind the clock.
//
// A crash between a publish's record write and its log append breaks the
// first half of the rule for one change; the publisher's repair pass finds
// it through the store's Pending notes and publishes it again under a fresh
// version, which restores the rule for that value.
type Timing struct {
	// PublishBudget is the longest a publisher lets a write run from taking
	// its version to the change-log append before giving that version up.
	PublishBudget time.Duration
	// ClockSkew is the most any publisher's clock may differ from any
	// reader's.
	ClockSkew time.Duration
	// LogSettle is how far behind the time of a complete log read a reader
	// moves its cursor (gossip.Config.LogSettle).
	LogSettle time.Duration
	// SnapshotLag is how far behind the wall clock a snapshot's version is
	// kept (the publisher's snapshotLag).
	SnapshotLag time.Duration
	// LogRetention is how much change log is kept below the oldest snapshot
	// (publisher.Config.LogRetention); 0 never trims.
	LogRetention time.Duration
	// ReplicaLag is the longest a regional replica's change log trails the
	// primary's (origin/replica, Global Tables, bucket replication); 0
	// when readers read the primary. Readers of a replica see an entry that
	// much later, so their LogSettle must cover it too.
	ReplicaLag time.Duration
}

// Validate checks that the constants agree:
//   - PublishBudget is positive and ClockSkew not negative;
//   - LogSettle >= PublishBudget + ClockSkew + ReplicaLag, or readers
//     advance past changes still allowed to arrive;
//   - SnapshotLag >= PublishBudget + ClockSkew, or a snapshot claims changes
//     still allowed to arrive;
//   - LogRetention is 0 (never trim) or SnapshotLag + LogRetention is at
//     least 2 * LogSettle: the log is trimmed at most to the oldest
//     snapshot's version minus LogRetention, and that point must stay two
//     settle windows behind the clock, or a node whose cursor is one settle
//     window behind finds its log trimmed and reloads everything.
func (t Timing) Validate() error {
	var errs []error
	if t.PublishBudget <= 0 {
		errs = append(errs, fmt.Errorf("publish budget %s must be positive", t.PublishBudget))
	}
	if t.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("clock skew %s must not be negative", t.ClockSkew))
	}
	if t.ReplicaLag < 0 {
		errs = append(errs, fmt.Errorf("replica lag %s must not be negative", t.ReplicaLag))
	}
	need := t.PublishBudget + t.ClockSkew
	if t.LogSettle < need+t.ReplicaLag {
		errs = append(errs, fmt.Errorf("log settle %s is below publish budget %s + clock skew %s + replica lag %s: readers would move past changes still arriving", t.LogSettle, t.PublishBudget, t.ClockSkew, t.ReplicaLag))
	}
	if t.SnapshotLag < need {
		errs = append(errs, fmt.Errorf("snapshot lag %s is below publish budget %s + clock skew %s: snapshots would claim changes still arriving", t.SnapshotLag, t.PublishBudget, t.ClockSkew))
	}
	if t.LogRetention < 0 || (t.LogRetention > 0 && t.SnapshotLag+t.LogRetention < 2*t.LogSettle) {
		errs = append(errs, fmt.Errorf("log retention %s must be 0 (never trim) or, with snapshot lag %s, reach 2 * log settle %s", t.LogRetention, t.SnapshotLag, t.LogSettle))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("timing: %w", err)
	}
	return nil
}
