package publisher

import "github.com/dataplane/dataplane/origin"

// SetSnapshotLayout makes c's publisher cut snapshots by l (tests of the
// incremental layout use small chunks).
func SetSnapshotLayout(c *Config, l origin.Layout) { c.layout = l }

// SkipClockCheck turns c's check of the host's clock against the origin's
// off, for tests whose publisher clock is off on purpose.
func SkipClockCheck(c *Config) { c.noClockCheck = true }

// CheckpointInterval is how often a publisher with timing t issues
// checkpoints of a namespace that changes.
var CheckpointInterval = checkpointInterval
