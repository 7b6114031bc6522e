// Package checkpoint provides the publisher's signed per-namespace
// checkpoints (DESIGN decision 11): proof that a node holds a namespace
// whole and current, not only each change.
//
// A Checkpoint says: as of version V, the namespace's state, the multiset
// of (key, version, tombstone, value digest) of every key's newest change
// at or below V (tombstones below TombstoneFloor left out), has this
// statehash.Hash and this Count; issued at IssuedAt, valid until
// ExpiresAt; the issuer's previous checkpoint was at Prev. The publisher
// process that holds the signing key signs it (sign.Signer.SignDetached:
// the same keys, key ids, trusted sets and rotation as record seals) and
// stores it in the origin beside the snapshots (PutLatest), and proves
// each snapshot it writes with the checkpoint at the snapshot's version
// (SnapshotProof, PutProof). State keeps a namespace's state and its hash
// in O(1) per change; Verifier checks a checkpoint and counts refusals by
// reason (unsigned, untrusted key, bad signature, expired, rollback,
// future, mismatch).
//
// # How a node uses it
//
// Keeping its hash. A node keeps one State per namespace it holds whole
// and applies to it every change it applies to its version index (from
// gossip, the log, a snapshot, an origin read), by version: State.Apply
// of a change costs two XOF calls (old state out, new in) and a few
// hundred word operations, about 2 µs of CPU, whatever the size of the
// namespace. Element digests come from the record Seal a change carries
// (a change without its value has the digest its seal signs), or from
// the value.
//
// Comparing at V when ahead. A node is usually ahead of the newest
// checkpoint for some keys: it applied changes above V, which the
// checkpoint does not cover. State journals every applied change with the
// state it replaced, and State.At(V) undoes those above V (O(changes above
// V)), so the node compares its state at V, not its current state. The
// journal is trimmed (State.Forget) to the version of the last checkpoint
// verified, so it holds only the changes of the last seconds. A node that
// loads a snapshot with its proof builds its State exactly at the
// snapshot's version V (its records at or below V, and the proof's Above
// state for each record above V), calls Forget(V), and then applies the
// records above V like any change, so they are journaled and State.At(V)
// still answers. (Loading a snapshot without its proof, it could only
// apply every record and Forget the newest version among them: no
// comparison below that until the log has carried it past.)
//
// What a match proves. When Verifier.Verify accepts a checkpoint and Match
// finds the node's state at V equal to it, the node held, at V, exactly
// the publisher's state: every key, every delete, nothing more. It is then
// current as of IssuedAt (minus the issuer's LogSettle, which V trails the
// clock by), and absence is authenticated: a key the node does not hold
// did not exist at V. Nothing else proves freshness or completeness: not
// an accepted change, not a peer's claim, not a log read that merely
// ended. A checkpoint the node does not match tells it it missed
// something: it reads the log at once, and a namespace that fails closed
// does so when its last match is older than its D. A snapshot is whole
// when Verifier.VerifySnapshot accepts it with its proof: one signature
// per namespace, a signature per record newer than the snapshot's version,
// and hashing: about 1.5 µs of CPU a record (the SHA-256 of its value and
// its state hash), so 1M records hash in under a second on two cores,
// where one ed25519 verification per record takes about a minute of CPU
// (BENCHMARKS.md, "Signed warm-up"). A node that streams the snapshot
// (record.SnapshotReader) can hash it while it decodes it:
// Verifier.StartSnapshot (or StartBase, for a snapshot loaded as a base)
// checks the checkpoint, SnapshotCheck.Add (or Take, without a copy)
// takes each batch of decoded records and hashes it on every core, and
// SnapshotCheck.Finish matches; nothing is proven before Finish returns
// nil. SnapshotCheck.State then gives the node its State of the namespace
// from the digests the hashing computed, without hashing anything twice.
//
// Rollback and freeze. A node persists the last checkpoint it verified per
// namespace (beside its local snapshot file) and passes it as last to
// Verify, which refuses any older checkpoint (lower V, or the same V
// issued earlier); a snapshot, a peer's answer, a local file or a log
// cursor that claims less than that checkpoint's V is refused too.
// Checkpoints expire: ExpiresAt is IssuedAt plus the issuer's lifetime,
// by default 5 minutes, the default D (staleness.DefaultFailClosedAfter)
// of a namespace that fails closed, and issuers renew a checkpoint before
// half of its lifetime has passed, so a node that follows the publisher
// always holds one younger than D/2 plus the propagation delay. Choose the
// lifetime between D and 2·D: shorter than D makes a brief issuer outage
// fail every node closed, longer than 2·D lets a replayed checkpoint hide
// a revocation for longer than D.
//
// Partial namespaces. A node that holds only some keys of a namespace
// cannot compute the namespace's hash: a multiset hash proves a whole set,
// not membership of one element. For such namespaces a checkpoint proves
// nothing about the keys held (each stays proven by its own seal and
// version floor), nor about absence (a miss goes to the origin), nor
// freshness. What it can still do there: bound rollback (the node refuses
// snapshots, cursors and files older than a verified checkpoint's V) and
// let a cache node that holds the namespace whole prove it to others.
// Per-key proofs would need a Merkle tree over the sorted keys, which
// costs O(log n) per change instead of O(1); not built.
package checkpoint
