// Package chaos is the dataplane's chaos suite: the pieces that drive a
// real multi-node cluster on loopback through random faults and check the
// DESIGN invariants over everything it served.
//
//   - FaultyStore wraps a real origin store and makes the nodes' reads of
//     it fail (outage), hang (slow origin, 5 s responses) or return
//     corrupt objects, switchable at any time.
//   - NewSchedule draws a reproducible random schedule of faults from a
//     seed: node stops and crashes with restarts, partitions between zones
//     and heals, gossip loss and delay, origin outage, slow and corrupt
//     origin, clock skew; with cache nodes in the shape, cache nodes killed
//     (restarted empty) and slowed.
//   - Checker records every read a node served and every write a publisher
//     made, and checks monotonic reads per key per node, no resurrection
//     of deleted or overwritten versions, that held keys are always served,
//     that every served version was written with the value served, that
//     reads after convergence serve the origin's latest version, and, for
//     a namespace that fails closed, that no value is served past the bound
//     D of an outage that left no node a proof of being current, and, with
//     a revocation bound (RevocationBound, Revoked), that no version of a
//     key is served longer than the bound after a newer tombstone of it was
//     published.
//
// The suite itself is TestChaos (over a directory origin), TestChaosS3
// (over a real S3-compatible server), TestChaosDynamo (over dynalite) and
// TestChaosCacheTier (nodes reading a directory origin through two real
// cache nodes, with httporigin), TestChaosFailClosed (the keys namespace
// failing closed after 4 s, through a 9 s outage of the origin and the
// publishers) and TestChaosDroppedRevocations (keys failing closed after
// 4 s under signed checkpoints, the nodes verifying: 24 keys deleted for
// good through the run, every tombstone of keys dropped on the wire to
// node-0 alone (a netsim.Filter decoding each gossip message to it), and
// node-0's origin, log and checkpoints included, down in long windows while
// every other change reaches it; no node may serve a revoked key past D
// plus the slack; DATAPLANE_CHAOS_UNSIGNED=1 runs it without signing, where
// that check fires) in this package:
//
//	go test -race -count=1 -run TestChaos -v ./chaos/
//
// Each prints a summary table (faults injected, operations, reads checked,
// convergence time, violations). DATAPLANE_CHAOS_SEED replays a run's
// schedule (the test prints the command on failure); DATAPLANE_CHAOS_LENGTH
// changes how long faults are injected (default 40s, 20s over S3);
// DATAPLANE_CHAOS_LOG=1 shows the nodes' logs. RELIABILITY.md at the root
// of the module lists what each check stands for and the last run's
// figures.
package chaos
