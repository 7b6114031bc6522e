// Package follow follows the origin's change log: the backstop that bounds
// staleness whatever gossip does, and the only path of a node without
// gossip (the RFC's TTL-only options).
//
// A Follower owns the log cursor (every change at or below it has been
// handed on) and LogSettle (how far behind a complete read the cursor
// moves). It reads the log every Interval, at start from Config.Resume,
// and when asked (CatchUp: a gossip member rejoining, a digest showing a
// gap; Rewind: a late warm-up). Each change it reads goes to its Target,
// the node, whose cache's version index is the one ordering gate: the
// follower keeps no per-key ordering of its own. When the log was trimmed
// past the cursor, the Target reloads from snapshots (Recoverer) or
// revalidates everything (Revalidator).
//
// Three methods are where a change of trust will hook in: applyPage (each
// page of the log), recover (each reload from snapshots) and declare (the
// one place the follower says "caught up to V", telling a CaughtUpper).
//
// Metrics: dataplane_follow_log_reads_total{trigger,result},
// dataplane_follow_changes_total, dataplane_follow_changes_refused_total
// {reason}, dataplane_follow_full_revalidations_total,
// dataplane_follow_target_panics_total.
package follow
