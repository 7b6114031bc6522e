// Package cachenode is the regional cache tier (RFC options 3 and 4B): an
// HTTP server in front of a real origin.Store (S3, DynamoDB, a directory)
// that answers record reads from its own cache.Cache, reading through the
// origin, and forwards writes to the origin. Sentinels reach a set of cache
// nodes through origin/httporigin, which rendezvous-hashes each key to one
// node, so a region reads each key from the origin about once per window
// instead of once per sentinel; concurrent misses for one key on one node
// make one origin read (the cache's singleflight).
//
// A Server is an http.Handler. Mount the admin handler (package admin) on a
// separate listener with Ready and Inspect from the Server, and join the node
// to gossip with the Server as the Applier (Apply, Invalidate), so that
// changes reach the node before its fresh window ends.
//
// # Wire protocol
//
// Versions travel as 16 hex digits (record.Version.String). In a path, a
// namespace goes verbatim and a key is escaped byte by byte: [A-Za-z0-9_-]
// stay, every other byte (including '/', '.', '%') is %XX, so no key can be
// normalised or split by a router (see wire.RecordPath). Every error answer
// is JSON, {"error": "<what was wrong>", "code": "<code>"}, with the codes of
// package wire: invalid (400), not_found (404), no_route (404/405), conflict
// (409), truncated (410), too_large (413), corrupt (502), unavailable (503).
// A refused token is 401 or 403 with {"error": ...} only (bearer.Require).
// Clients map the codes back to the origin's sentinel errors; an error
// answer without a known code means the server is not a cache node.
//
// Reads are open unless Config.ReadToken is set; then they need
// "Authorization: Bearer <ReadToken>". Writes always need
// "Authorization: Bearer <WriteToken>" (bearer.Require: 401 without or
// with a wrong token, 403 when the node has no WriteToken).
//
//	GET /v1/records/{ns}/{key}
//	    Request:  optional If-None-Match: "<version>"
//	    200       body: the record, record.Marshal encoding (checksummed),
//	              Content-Type: application/vnd.dataplane.record. A deleted
//	              key answers its tombstone, so clients learn the deletion's
//	              version. Headers: ETag: "<version>", Age: <seconds since the
//	              origin or a write confirmed it>, X-Dataplane-Stale: 1 when
//	              the value is past its fresh window or the origin could not
//	              confirm it, Cache-Control: no-cache.
//	    304       If-None-Match named a version at least as new as the held
//	              one ("only if newer than V"): no body, ETag of the held
//	              version. It costs no encoding and, when the key is fresh,
//	              no origin read.
//	    404       not_found: the origin has never had the key.
//	    400       invalid namespace, key or If-None-Match.
//	    502       corrupt: the origin's object does not decode. It is not
//	              cached; a held good value is served instead (stale) when
//	              there is one.
//	    503       unavailable: the origin failed and nothing is held.
//
//	PUT /v1/records/{ns}/{key}?prev=<version>      (write token)
//	    Body: the record, record.Marshal encoding, at most
//	    record.MaxEncodedSize bytes, of the same ns/key as the path.
//	    Forwarded as origin CompareAndSwap(rec, prev); prev 0 creates.
//	    204       written; ETag: the new version. The node's cache holds the
//	              record from then on (read-your-writes through the node).
//	    409       conflict: the stored version is not prev. If the node held
//	              prev, its copy is invalidated.
//	    400       invalid: bad prev, body that does not decode, a record that
//	              breaks a rule, a path that does not match the body.
//	    413       too_large.  502 corrupt / 503 unavailable as above.
//
//	POST /v1/log                                      (write token)
//	    Body: {"namespace","key","version","tombstone"} (JSON, ≤ 4 KiB).
//	    204 appended (idempotent), 400 invalid.
//
//	GET /v1/log?after=<version>&limit=<n>
//	    200 {"changes":[{"namespace","key","version","tombstone"},...]}, in
//	    version order, at most min(limit, 1000) (no limit: 1000); clients
//	    page. 410 truncated: changes after `after` were trimmed.
//	    Answered from a shared origin read up to Config.Timing.LogTailTTL old
//	    (see below).
//
//	POST /v1/log/trim?before=<version>                (write token)
//	    204 trimmed.
//
//	GET /v1/snapshots/{ns}
//	    200 body: record.MarshalSnapshot encoding, Content-Type
//	    application/vnd.dataplane.snapshot. 404 not_found.
//
//	PUT /v1/snapshots/{ns}                             (write token)
//	    Body: the snapshot encoding, at most wire.DefaultMaxSnapshotSize bytes,
//	    of the namespace in the path. 204 stored, 400 invalid, 413.
//
//	GET /v1/snapshots/{ns}/checkpoint
//	GET /v1/snapshots/{ns}/ckpt-<version>      (16 hex digits)
//	    The namespace's latest signed checkpoint, and the proof of its
//	    snapshot at <version> (package checkpoint: LatestName, ProofName),
//	    as the origin stores them: 200, body byte for byte,
//	    Content-Type application/vnd.dataplane.snapshot-part,
//	    Cache-Control: no-cache. 404 not_found: the origin has none (or
//	    keeps no snapshot parts). 400 invalid: any other part name (the
//	    snapshot's own objects are served merged, above). 502 corrupt: what
//	    the origin holds does not decode as what it is named, names another
//	    namespace or version, is from the future, or, with
//	    Config.Verifier, is not signed by a trusted key.
//
// Record reads come from the cache. Change-log reads share origin reads:
// every sentinel of a region polls the log every few seconds, each from its
// own cursor, so concurrent requests wait for one origin read and a request
// up to Config.Timing.LogTailTTL (250 ms by default) after a read started, with a
// cursor at or above that read's, is answered from it; a shared read starts
// 10 s below the clock so that cursors a little behind are
// covered, unless a page of changes lies there below the cursor (after a
// burst): a request a shared page falls short for reads from its own cursor,
// and later requests at or above it share that read. A region's sentinels
// then cost about one origin log read per LogTailTTL, whatever their
// number, and never more than one per poll but for one wasted read per page
// of changes (TestLogTailCost). The answer may trail the origin's log
// by LogTailTTL, like a replica's: readers count it in origin.Timing's
// ReplicaLag. An append or trim through the node drops the shared read.
// Other log calls and snapshot calls go to the origin every time (they are
// rare: catch-up and cold start).
//
// # Checkpoints
//
// Sentinels that verify signatures check each namespace they hold whole
// against the publisher's signed checkpoints (package checkpoint, DESIGN
// decision 11): they read the latest checkpoint with every change-log read
// and, with every snapshot, its proof. Behind the tier they read both
// through the node (httporigin.Store.CheckpointParts), so a sentinel with
// RequireCheckpoints warms up, serves and proves itself current through
// the tier as against the origin. The node shares those reads like the
// log's: one origin read of a namespace's latest checkpoint answers every
// request for it up to Config.Timing.LogTailTTL (250 ms) after it started,
// one of a proof up to a tenth of Timing.CheckpointLifetime (30 s), and
// concurrent requests
// wait for one read. It never answers a checkpoint older than one it has
// read (lower version, or the same version issued earlier): an origin that
// goes back (a replica behind, a restored bucket, a writer's rollback),
// loses it or fails leaves the newer one served. It holds no signing key
// and need not be trusted: sentinels verify every checkpoint and proof
// they get (signature, namespace, version, expiry, rollback against their
// own last verified one) and every snapshot against its proof, so a node
// that lies is refused like a bucket writer; like a down node, it can
// withhold. A forged checkpoint in the origin could hold back the real
// ones on a node without Config.Verifier for about
// MaxFutureSkew plus the publisher's LogSettle (a node refuses versions
// further ahead of its clock); with it, never. With a verifier the node
// also takes the checkpoints the publisher pushes by gossip
// (Server.OfferCheckpoint as gossip.Config.OnCheckpoint): a newer one that
// verifies is served at once, before the origin read finds it.
//
// # Transport security
//
// The Server is an http.Handler: whoever runs it owns the listener. The
// cachenode command serves it with bounded headers (64 KiB, 10 s to read)
// and, with -tls-cert and -tls-key, over TLS; -tls-client-ca requires client
// certificates (mutual TLS). Its clients (package httporigin) then dial
// https:// URLs with httporigin.Config.TLS. Tokens are compared in constant
// time and never logged. Every request body is bounded (413 beyond) before
// anything reaches the origin.
//
// # Metrics
//
// With Config.Registerer set: dataplane_cachenode_requests_total{route,code}
// (304s are code="304"), dataplane_cachenode_stale_responses_total,
// dataplane_cachenode_log_reads_shared_total,
// dataplane_cachenode_checkpoint_reads_shared_total, and the
// cache's own dataplane_cache_* (origin reads, hits, revalidations).
package cachenode
