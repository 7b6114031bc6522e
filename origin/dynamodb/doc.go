// Package dynamodb is an origin.Store in one Amazon DynamoDB table (or a
// DynamoDB-compatible server such as dynalite), driven with the AWS SDK for
// Go v2. It is the origin of the RFC's options 4A (DynamoDB + SWR) and 4B
// (DynamoDB + cache nodes).
//
// It needs only GetItem, PutItem, UpdateItem, Query and BatchWriteItem:
// neither DynamoDB Streams nor transactions (TransactWriteItems), which
// dynalite lacks.
//
// # Table design
//
// One table with a string partition key "pk" and a string sort key "sk"
// (CreateTable makes it, on-demand billing). Namespaces are [a-z0-9_-] and
// never contain '#', which keeps every key below unambiguous.
//
//	pk                  sk                          attributes
//	rec#<ns>#<key>      r                           ver (N): the version; rec (B): record.Marshal bytes
//	log#<bucket>#<sh>   <version hex16>#<ns>#<key>  tomb (BOOL): a change log entry, in shard sh (%02d)
//	log#<bucket hex16>  <version hex16>#<ns>#<key>  tomb (BOOL): the same, in a bucket of one shard
//	logmeta             bucket#<bucket hex16>       shards (N): the bucket holds entries, over this many shards
//	logmeta             horizon                     hz (N): the trim horizon
//	pending#<sh>        <version hex16>#<ns>#<key>  tomb (BOOL): a publish in flight (origin.Pending), 16 shards
//	snap#<ns>           cur                         gen (S), size (N), n (N), d (B) when it
//	                                                fits one item: the snapshot or its manifest
//	snap#<ns>           part#<name>                 the same, for a part the manifest names
//	snap#<ns>           gen#<gen>#<chunk %06d>      d (B): one chunk of a larger object
//
// Records: one item per key, so reads of a namespace spread over as many
// partitions as it has keys (a partition per namespace would cap a hot
// namespace at one partition's throughput), and Get is one GetItem. The
// whole record.Marshal encoding is stored, not separate value and tombstone
// attributes: its CRC-32C turns a damaged item into an error wrapping
// record.ErrCorrupt for that key alone, and its namespace, key and version
// are checked against the item's key and ver. ver is stored beside it as a
// number only for the condition of CompareAndSwap. A record's item is at
// most about 257 KiB, under DynamoDB's 400 KB item limit; a larger item is
// refused with record.ErrInvalid before any request.
//
// CompareAndSwap is a PutItem with the ConditionExpression
// attribute_not_exists(pk) when prev is 0 and ver = :prev otherwise; a
// ConditionalCheckFailedException is origin.ErrConflict. Get is a GetItem
// with ConsistentRead. DynamoDB has no conditional read, so Get with ifNewer
// reads the whole item and answers origin.ErrNotModified itself: unlike an
// S3 304, an unchanged record costs the same read capacity as a changed one.
//
// Change log: entries are grouped into buckets of 2^22 ms (about 70 minutes)
// of their version's physical time, and each bucket is spread over
// Config.LogShards partitions (default 8) by a hash of the entry's namespace
// and key, sorted by version within each. ReadLog is one Query of the bucket
// markers, then, for the bucket holding after+1 and every later one in
// order, one Query per shard for sk >= <after+1 hex16> (each asking for at
// most the changes still wanted), merged in version order; a read that
// finds nothing new costs 2 + LogShards requests. The logmeta partition
// lists the buckets that hold entries (AppendLog writes the bucket's marker
// before the entry, once per bucket per Store, only if absent), and the
// marker records the bucket's shard count, so stores configured with
// different LogShards, and tables written before sharding (markers without
// a count: one shard, partition log#<bucket>), read and write every bucket
// alike. Appending the same change twice rewrites the same item.
//
// Throughput: DynamoDB serves at most about 1,000 write units and 3,000
// strongly consistent read units per second per partition. A log entry is
// one write unit (well under 1 KB), so the log takes about LogShards x 1,000
// changes per second (8,000 by default) before throttling; one key's
// changes share a shard, which caps a single key at 1,000 per second. Each
// follower's poll reads one Query per shard of the current bucket, so N
// nodes polling every LogInterval cost each shard N / LogInterval reads a
// second: 1,000 nodes polling every second stay at a third of a partition's
// read limit, whatever the shard count. The bucket markers (one write per
// bucket per publisher process, one read per poll) and the horizon (one
// read per poll) are read by every poll; they are tiny items, but at
// thousands of polls per second they are the partition that warms first,
// which DynamoDB's adaptive capacity splits as a hot key. Publishes in flight
// are noted in 16 pending#<sh> partitions (two writes per publish), spread
// the same way. TrimLog raises the horizon first (an UpdateItem that only
// ever increases it), then deletes the entries below it in every shard and
// the markers of buckets wholly below it; ReadLog reads the horizon after
// the entries, so a reader never silently misses a trimmed change
// (origin.ErrLogTruncated).
//
// Snapshots: the objects of origin.SnapshotParts (the main object "cur",
// which holds a small snapshot whole or the manifest of a large one, and the
// parts it names) are each stored like this. An object that fits one item
// lives inline in its pointer item, so the common case is one GetItem. A larger one is written as a new
// generation of chunk items first, then "cur" is switched to it in one
// PutItem, and only then are the previous generation's chunks deleted: a
// reader sees the old or the new snapshot, never a mix. A reader whose
// generation is deleted under it reads "cur" again and retries. The
// snapshot's own CRC-32C checks the reassembled bytes.
//
// # Errors
//
// Errors map onto the origin's sentinels as the S3 store's do (one mapping,
// shared): throttling, timeouts, network failures and 5xx answers are
// retried by the SDK's retryer with exponential backoff and jitter
// (Config.MaxRetries, see awsconn.Conn); what still fails wraps
// origin.ErrUnavailable and names the table and the key. A missing table is
// no sentinel: the error names the table and says it does not exist. A
// cancelled context yields an error wrapping context.Canceled; a passed
// deadline wraps both context.DeadlineExceeded and origin.ErrUnavailable.
// New sends no request, so a node starts while DynamoDB is unreachable.
//
// # Global Tables
//
// A Global Table replicates every item to the other regions asynchronously
// (typically within a second or two) and settles concurrent writes to one
// item in different regions by last writer wins, by DynamoDB's own write
// timestamps, not by our versions. A ConditionExpression is checked only
// against the local region's copy, so publishers in two regions can both
// "win" a CompareAndSwap on one key; when replication settles one write is
// gone, and it may be the one with the higher version. Reads stay monotonic
// anyway: every record carries its HLC version and every reader (cache,
// gossip, log follower) applies only versions newer than what it holds, so no
// sentinel ever goes back to an older version of a key. But nodes can then
// disagree (one holds the lost higher version, a cold one reads the
// surviving lower one) until the key is written again. Hence the
// recommendation: run the publisher, and TrimLog and PutSnapshot, in one
// region only, and let the other regions read their local replica.
package dynamodb
