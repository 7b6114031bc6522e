package cachenode

import "time"

// SetNow makes now the clock of c's cache, gossip member and log follower.
func SetNow(c *Config, now func() time.Time) { c.now = now }

// SetMaxSnapshotSize bounds c's PUT snapshot bodies to n bytes.
func SetMaxSnapshotSize(c *Config, n int64) { c.maxSnapshot = n }

// SetLogTailSpan makes c's shared log reads start d below the clock.
func SetLogTailSpan(c *Config, d time.Duration) { c.tailSpan = d }

// SetCheckpointTTL makes one origin read of a latest checkpoint answer c's
// readers for d; 0: every request reads the origin.
func SetCheckpointTTL(c *Config, d time.Duration) { c.ckptTTL = orEveryRead(d) }

// SetProofTTL is SetCheckpointTTL for snapshot proofs.
func SetProofTTL(c *Config, d time.Duration) { c.proofTTL = orEveryRead(d) }

func orEveryRead(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// CheckpointTTL is how long c's shared reads of latest checkpoints last.
func CheckpointTTL(c Config) time.Duration { return c.checkpointTTL() }

// ProofTTL is how long c's shared reads of snapshot proofs last.
func ProofTTL(c Config) time.Duration { return c.snapshotProofTTL() }
