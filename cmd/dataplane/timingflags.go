package main

import (
	"flag"
	"time"

	"github.com/dataplane/dataplane/origin"
	"github.com/dataplane/dataplane/publisher"
)

// timingFlags are the flags of origin.Timing, one per field, shared by every
// command that publishes (publish, sync) or runs a node (sentinel,
// cachenode): give every process of a deployment the same values. A flag
// left unset takes the preset's value (origin.DefaultTiming, or
// origin.WANTiming with -wan). Every process checks the set whole at start
// (origin.Timing.Validate) and refuses an inconsistent one, naming the flags'
// fields, their values and the rule.
type timingFlags struct {
	fs     *flag.FlagSet
	fields map[string]*time.Duration // flag name → its value
	wan    *bool                     // nodeFlags.wan; nil: no -wan
}

// timingField is one field of origin.Timing, its flag and help.
type timingField struct {
	name  string
	field func(*origin.Timing) *time.Duration
	help  string
}

var timingFields = []timingField{
	{"publish-budget", func(t *origin.Timing) *time.Duration { return &t.PublishBudget },
		"longest a publish may take from taking its version to its change-log entry before it is retried under a fresh one"},
	{"clock-skew", func(t *origin.Timing) *time.Duration { return &t.ClockSkew },
		"most any publisher's clock may differ from any node's; publishers refuse to write when their clock is provably\nfurther than this from the origin's (S3 and DynamoDB tell their time), and nodes refuse versions more than\nthis + 2s (at least 5s) ahead of their clock"},
	{"log-interval", func(t *origin.Timing) *time.Duration { return &t.LogInterval },
		"how often nodes read the origin's change log, with or without gossip"},
	{"log-settle", func(t *origin.Timing) *time.Duration { return &t.LogSettle },
		"how far behind a complete read of the change log a node's cursor moves: at least -publish-budget + -clock-skew +\n-replica-lag + -log-tail-ttl (3s with -wan)"},
	{"log-retention", func(t *origin.Timing) *time.Duration { return &t.LogRetention },
		"how much change log, in version time, publishers keep below the oldest snapshot (0: never trim)"},
	{"replica-lag", func(t *origin.Timing) *time.Duration { return &t.ReplicaLag },
		"longest a regional replica's change log trails the primary's (0: nodes read the primary)"},
	{"log-tail-ttl", func(t *origin.Timing) *time.Duration { return &t.LogTailTTL },
		"how long one cache node's change-log read answers its region's log readers (0: every read goes to the origin)"},
	{"checkpoint-lifetime", func(t *origin.Timing) *time.Duration { return &t.CheckpointLifetime },
		"how long a signed checkpoint is valid; publishers with -signing-key issue one of each namespace about every second\nwhile it changes and renew it before half of it passes; nodes check every fail-closed D against it (0: none issued)"},
}

// register defines every timing flag on fs, with DefaultTiming's values.
func (f *timingFlags) register(fs *flag.FlagSet) {
	f.fs, f.fields = fs, make(map[string]*time.Duration)
	def := origin.DefaultTiming()
	for _, tf := range timingFields {
		f.fields[tf.name] = fs.Duration(tf.name, *tf.field(&def), tf.help)
	}
}

// timing returns the preset with every timing flag set on the command line
// (or by environment or -config file) applied over it.
func (f *timingFlags) timing() origin.Timing {
	t := origin.DefaultTiming()
	if f.wan != nil && *f.wan {
		t = origin.WANTiming()
	}
	if f.fs == nil { // not registered: the preset
		return t
	}
	f.fs.Visit(func(fl *flag.Flag) {
		for _, tf := range timingFields {
			if tf.name == fl.Name {
				*tf.field(&t) = *f.fields[tf.name]
			}
		}
	})
	return t
}

// applyCheckpoints turns checkpoint issuing on in cfg when it signs and
// -checkpoint-lifetime is not 0.
func applyCheckpoints(cfg *publisher.Config) {
	cfg.IssueCheckpoints = cfg.Signer != nil && cfg.Timing.CheckpointLifetime > 0
}
