// Package s3 is an origin.Store on Amazon S3 or any S3-compatible server that
// honours conditional writes (If-Match / If-None-Match on PUT), driven with
// the AWS SDK for Go v2.
//
// # Object layout
//
// Every name below starts with Config.Prefix (empty, or e.g. "tenant-a/"), so
// several stores can share one bucket.
//
//	rec/<ns>/<escaped key>                       one record: record.Marshal bytes,
//	                                             metadata x-amz-meta-version: <version hex16>
//	log/<version hex16>/<ns>/<t|p>/<escaped key> one change: an empty object
//	                                             (t: tombstone, p: put)
//	log-horizon                                  the trim horizon: <version hex16>
//	snap/<ns>                                    the namespace's snapshot:
//	                                             record.MarshalSnapshot bytes, or
//	                                             the manifest of a bigger one
//	snap/<ns>.parts/<name>                       its chunks and deltas
//	                                             (origin.SnapshotParts)
//
// A namespace is [a-z0-9_-] and goes in verbatim. A key is escaped
// reversibly: bytes in [A-Za-z0-9_-] stay, every other byte (including '.',
// '/', '%' and '~') becomes %XX with upper-case hex, so no name ever holds
// "." or ".." segments or a slash from a key, and nothing in the HTTP path
// can be normalised away. Escaped keys longer than 200 bytes are cut into
// segments of at most 200 bytes joined by "~/" ('~' never occurs in an
// escaped key), because file-backed servers (versitygw's posix backend) map
// each "/"-separated part to a file name of at most 255 bytes; a "~"-ended
// segment is always a directory and never a file, so no key's object can
// collide with another key's directory.
//
// Every name fits S3's limit of 1024 bytes for every valid namespace and
// key under any prefix Config accepts (at most 256 bytes). Where the
// escaped key would make a name longer (a long prefix, namespace and key of
// escaped bytes: a signed change's pending note reaches 1,006 bytes plus
// the prefix), the key part is hashed instead: the first 64 bytes of the
// escaped key, "~" and the key's SHA-256 in lower-case hex ('~' followed
// by anything but '/' never occurs in an escaped key). A record object
// needs no more: its body holds the key. A change object (log entry or
// pending note) with a hashed name holds the key as its body, and a reader
// GETs it (one request per such change; short keys cost none). A change's
// log and pending names are hashed alike. Names that fit are written as
// before, so nothing written to a server that enforces the limit moved; a
// record of an over-long name that a server not enforcing it (versitygw)
// accepted before is no longer found under its old name until written
// again, while old over-long log entries still parse. CompareAndSwap
// checks a change's record, log and pending names before it writes, so no
// record lands whose log entry cannot be written.
//
// # Operations
//
// Get is one GET. When the caller's ifNewer is at least the version this
// Store last saw for the key, the GET carries If-None-Match with that
// version's ETag and an unchanged record costs a 304 with no body.
//
// CompareAndSwap with prev 0 is a PUT with If-None-Match: *. With prev > 0 it
// is a PUT with If-Match: the ETag of the object holding version prev, taken
// from the Store's memory of its last read or write (one request), or else
// from a HEAD (the version is in the object's metadata). A 412 or 409 answer
// is origin.ErrConflict.
//
// The change log is one empty object per change, named so that the bucket's
// lexical order is version order: ReadLog is a ListObjectsV2 starting after
// log/<after hex16>~ ('~' sorts after '/'), with no GETs, followed by one GET
// of log-horizon. TrimLog raises log-horizon first (a conditional PUT) and
// then deletes the entries below it, so a reader never silently misses a
// trimmed change: it reads the horizon after listing and reports
// origin.ErrLogTruncated per origin.Truncated.
//
// # Errors
//
// Errors map onto the origin's sentinels as the DynamoDB store's do (one
// mapping, shared): network failures, 5xx answers, throttling and timeouts
// are retried with exponential backoff and jitter (Config.MaxRetries, see
// awsconn.Conn); what still fails wraps origin.ErrUnavailable and names the
// bucket and object. A missing bucket is no sentinel: the error names the
// bucket and says it does not exist. A context that is
// cancelled yields an error wrapping context.Canceled; one whose deadline
// passes wraps both context.DeadlineExceeded and origin.ErrUnavailable (the
// origin did not answer in time). A stored object that does not decode wraps
// record.ErrCorrupt and names the key.
package s3
