// Package gossiptune holds the gossip protocol's tuning: the constants
// package gossip's presets (DefaultLANConfig, DefaultWANConfig,
// DefaultLocalConfig) choose for a network and a deployment does not set,
// as memberlist's presets hold its timers. A gossip.Cluster carries its
// preset's Tuning in an unexported field; this module's tests, simulations
// and the bench harness, which run networks no preset describes, change it
// with gossip.Cluster.Tune, whose argument's type lives here, in a package
// no other module can import.
package gossiptune

import "time"

// Tuning is the gossip protocol's tuning. Every field must be set: the
// presets set them all.
type Tuning struct {
	// RelaysPerRegion is how many members of each other region receive a
	// change directly and forward it to their own region, each to its
	// share of it (1/RelaysPerRegion of the members), so more relays cost
	// no more messages: they shrink what one lost relay packet delays.
	// At least 1.
	RelaysPerRegion int

	// PushAckTimeout is how long a node waits for a member to acknowledge
	// an eager push (or relay) before sending it again, until it has
	// measured the round trip to that member's region (by a push, or by a
	// memberlist probe); from then on it waits that round trip plus the
	// larger of 4 mean deviations and an eighth of it, plus 5 ms. The
	// first two retries keep the wait; later ones double it, up to 1 s
	// (a longer first wait is kept). About twice the round trip to the
	// farthest member. Positive.
	PushAckTimeout time.Duration

	// PushRetries is how many times an unacknowledged push is sent again.
	// 0 makes eager push fire-and-forget (gossip and the log still repair).
	PushRetries int

	// ReconnectInterval is how often a node tries to rejoin members it lost
	// (and its seeds, when it is alone). Memberlist alone would stop
	// talking to a dead member after GossipToTheDeadTime, leaving a healed
	// partition split. Positive.
	ReconnectInterval time.Duration

	// ReconnectTimeout is how long a lost member is tried before it is
	// forgotten.
	ReconnectTimeout time.Duration

	// DigestMaxBytes bounds the digest swapped in each push/pull: 64 to
	// gossip.MaxDigestSize.
	DigestMaxBytes int

	// RecentMax is how many recent changes (key, version and inline value)
	// the node remembers to filter duplicates and fill digests. Positive.
	RecentMax int

	// QueueMax bounds the gossip repair queue; the oldest messages are
	// dropped first (the change log still covers them). It also bounds
	// the eager pushes awaiting acknowledgement: beyond it, a push goes
	// out once, without retries. Both count the work shed in
	// dataplane_gossip_messages_dropped_total (reasons gossip_queue_full
	// and push_retry_shed), so a flood of changes never grows memory
	// without limit. Positive.
	QueueMax int
}
