package main

import (
	"flag"
	"time"

	"github.com/dataplane/dataplane/publisher"
)

// checkpointLifetimeFlag defines -checkpoint-lifetime on fs.
func checkpointLifetimeFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("checkpoint-lifetime", publisher.DefaultCheckpointLifetime,
		"with -signing-key: issue a signed checkpoint of each namespace's whole state about every second while it changes,\n"+
			"valid this long and renewed before half of it passes (keep it between the nodes' fail-closed D and 2 x D); 0 issues none")
}

// applyCheckpoints turns checkpoint issuing on in cfg when it signs.
func applyCheckpoints(cfg *publisher.Config, lifetime time.Duration) {
	if cfg.Signer != nil && lifetime > 0 {
		cfg.Checkpoint.Lifetime = lifetime
	}
}
