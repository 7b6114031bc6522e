// Package gossip spreads changes to every node of a cluster within about a
// second, in version order, over hashicorp/memberlist.
//
// Hand a change to any one node with (*Node).Publish, after writing it
// durably to the origin; every node's Applier (usually its cache) learns of
// it. A change travels three ways at once (DESIGN.md, "Propagation"):
//
//  1. Eager push: the publishing node sends it at once, by UDP, to every
//     member of its own region and to RelaysPerRegion (2; the protocol
//     tuning lives in the presets, see internal/gossiptune) members of
//     each other region (regions ride in memberlist node metadata), which
//     split their region between them (by a hash of member names) and
//     forward it the first time they see it, so a member gets one copy;
//     each relay also forwards the relay message to the region's other
//     relays, so a relay message lost on the long link is repaired inside
//     the region. Two hops, no gossip round.
//     Every receiver acknowledges; a sender resends to members that did not,
//     just after the round trip measured to their region (PushAckTimeout,
//     25 ms LAN and 300 ms WAN, until measured; after two retries the wait
//     doubles, up to 1 s), up to PushRetries times (8 in the presets),
//     stopping once a newer version supersedes the change.
//  2. Gossip repair: a change whose push some target never acknowledged
//     (or that went out with no acknowledgement awaited) is queued in a
//     memberlist TransmitLimitedQueue, where a newer version of a key
//     replaces an older one; memberlist piggybacks it on its gossip rounds,
//     and every node that learns a newer version from gossip or a digest
//     queues it again. An acknowledged push costs nothing more, so a change
//     costs a node about two messages (the change and, on average, one
//     ack), whatever the region's size (invariant 9).
//  3. Anti-entropy: each memberlist push/pull swaps a digest (high-water mark
//     and the newest changes, bounded in bytes). The origin's change log is
//     read by the node's log follower (package follow), not by gossip: a
//     Node asks its LogFollower to read now when a lost member rejoins and
//     when a digest shows a gap, and reports the follower's cursor in its
//     applied-version reports.
//
// Values up to InlineValueMax (default 512 bytes) travel inside the message,
// so receivers need no origin read; larger values travel as a version floor
// (Applier.Invalidate) and are fetched on next use.
//
// # Ordering
//
// Every path applies by version: a node hands its Applier, per key, only
// versions newer than any gossip has carried to it, and the Applier (the
// node's cache, whose version index is the one ordering gate, shared with
// the log follower and origin reads) ignores anything older than it holds,
// so duplicates, reordering and the paths racing are all harmless
// (invariants 1 and 2). Relays and
// re-gossip happen only on the first sight of a newer version, so there are
// no broadcast storms.
//
// # Bad input
//
// Messages are size-limited and decoded by hand with every length checked;
// anything malformed is dropped, counted (messages_dropped_total) and
// logged at most once a second. It never reaches the Applier and never
// panics (see FuzzDecode).
//
// # Encryption and key rotation
//
// With Config.SecretKeys set, memberlist encrypts and authenticates every
// packet and stream with AES-GCM; a node without a shared key can neither
// join nor inject changes, nor acknowledge an eager push in a member's name
// (acknowledgements travel as encrypted packets like everything else; see
// TestForgedAckIgnored). Without SecretKeys, New refuses the Config unless
// Insecure is set: plaintext gossip is opt-in, for tests and loopback dev
// clusters. With SecretKeys, Memberlist.GossipVerifyIncoming must stay true,
// or memberlist would accept plaintext packets. To rotate keys with no downtime, run each step on
// every node before starting the next:
//
//  1. n.InstallKey(newKey): every node can now decrypt with the new key.
//  2. n.UseKey(newKey): nodes encrypt with the new key; nodes not yet
//     switched still decrypt it, and still send with the old one, which
//     everyone can still decrypt.
//  3. n.RemoveKey(oldKey): the old key is gone.
//
// Also change SecretKeys in each node's configuration, so that a restart
// does not bring the old key back. Encryption cannot be turned on or off on
// a running node.
//
// # Fleet receipts and reports
//
// Receipt waits until a share of every region's members has applied a
// version of a key, as each member says itself: by an acknowledgement
// (sent after the apply; relays pass their region's acks back to the node
// that pushed to them) or by its answer to a query (Config.Held), never
// by a log cursor, which passes refused changes too. A member that refuses
// a change reports it with its reason (refusal.go), and the receipt lists
// it in RegionReceipt.Refused. Fleet is this node's view of every member's
// reported cursor, newest applied version per namespace and last refused
// changes. The reports ride memberlist node metadata (format 2) and are
// sent only when due (see report.go and Config.ReportInterval).
// Config.Observer keeps a node that serves nothing (a publisher's) out of
// both.
//
// # Checkpoints
//
// PushCheckpoint spreads a publisher's signed namespace checkpoint like a
// change (eager push to the region, relays splitting the other regions),
// by reliable stream since it does not fit a packet; each node hands every
// checkpoint it receives to Config.OnCheckpoint, which decides trust, and
// a relay forwards only one newer than the last it forwarded for the
// namespace (checkpoint.go).
//
// # Signed changes
//
// Encryption keeps strangers out, not insiders: every node holds the gossip
// key. With Config.Verifier set (a *sign.Verifier trusting the publishers'
// keys), a node checks the publisher's signature (record.Seal) of every
// change from every path, push, relay, gossip, digests and the log, before
// it remembers, applies, relays or re-gossips it; a change with its value
// is checked against the value's digest, an invalidation-only change
// against the seal alone. Refused changes are counted in
// messages_dropped_total with reason unsigned, untrusted_key, bad_signature
// or digest_mismatch (and "future" for a version too far ahead). A change
// no newer than one the node has seen is rejected as stale before any
// signature is checked: duplicates and replays cost no verification.
// Acknowledgements are not signed: a gossip-key holder forging one can stop
// a sender's push retries to one member for one version (gossip repair,
// anti-entropy and the log still deliver it) and make that member count as
// applied in a fleet receipt (see Receipt).
//
// # Metrics
//
// With Config.Registerer set, a node exports (prefix dataplane_gossip_):
// messages_sent_total{path}, messages_received_total{path},
// messages_dropped_total{reason}, messages_rejected_total{path} (valid but
// not newer), changes_applied_total{path}, apply_lag_seconds{path} (now
// minus the version's physical time), members{state}, antientropy_repairs_total{source},
// push_retries_total, push_acks_total, push_unacked_total,
// applier_panics_total, reconnects_total{result},
// checkpoints_total{event} and refusals_reported_total{reason}.
//
// The subpackage netsim wraps memberlist's transport to inject loss, delay,
// jitter and partitions, for tests and the multi-region benchmark.
package gossip
