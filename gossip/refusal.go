package gossip

import (
	"fmt"
	"time"

	"github.com/dataplane/dataplane/record"
)

// Refusals and queries (issue 23): a receipt counts a member only for a
// version the member itself says it holds (an ack of a push or relay, or
// the answer to a query), never because its log cursor passed the version:
// a verifying node's cursor passes every change it reads, those it refused
// (unsigned, signed by an untrusted key, a bad signature) included. A node
// that refuses a change says so, with the reason, to whoever pushed it,
// in its answers to queries, and in its fleet report (the last few).

// Refusal is a member that refused a version of a key, and why: "unsigned",
// "untrusted_key", "bad_signature", "digest_mismatch" (an inline value
// that does not match its signed digest), "future" (a version too far
// ahead of the member's clock) or "invalid"; "schema" (a value its schema
// refuses) has a wire code but no node checks schemas when it applies yet.
type Refusal struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
}

// RefusedChange is a change a member refused, as its fleet report shows.
type RefusedChange struct {
	Namespace string         `json:"namespace"`
	Key       string         `json:"key"`
	Version   record.Version `json:"version"`
	Reason    string         `json:"reason"`
}

// refusalReasons are the reasons by wire code (0 is not used).
var refusalReasons = [...]string{1: "unsigned", 2: "untrusted_key", 3: "bad_signature", 4: "digest_mismatch", 5: "future", 6: "schema", 7: "invalid"}

// reasonCode returns the wire code of reason; unknown reasons are "invalid".
func reasonCode(reason string) byte {
	for i, r := range refusalReasons {
		if i > 0 && r == reason {
			return byte(i)
		}
	}
	return 7
}

// refusal is a decoded refusal message: a.from refused a.version.
type refusal struct {
	ack
	reason string
}

func encodeRefusal(r refusal) []byte {
	return append(appendAckLike(nil, kindRefusal, r.ack), reasonCode(r.reason))
}

const maxRefusalSize = maxAckSize + 1

func decodeRefusal(b []byte) (refusal, error) {
	a, rest, err := decodeAckLike(b, kindRefusal, maxRefusalSize)
	if err != nil {
		return refusal{}, err
	}
	if len(rest) != 1 || rest[0] == 0 || int(rest[0]) >= len(refusalReasons) {
		return refusal{}, fmt.Errorf("%w: bad refusal reason", record.ErrCorrupt)
	}
	return refusal{ack: a, reason: refusalReasons[rest[0]]}, nil
}

func encodeQuery(q ack) []byte { return appendAckLike(nil, kindQuery, q) }

func decodeQuery(b []byte) (ack, error) {
	q, rest, err := decodeAckLike(b, kindQuery, maxAckSize)
	if err != nil {
		return ack{}, err
	}
	if len(rest) != 0 {
		return ack{}, fmt.Errorf("%w: %d trailing bytes in query", record.ErrCorrupt, len(rest))
	}
	return q, nil
}

// held returns the newest version of ns/key this node holds or knows as a
// floor: from Config.Held (every path) and from what gossip saw.
func (n *Node) held(ns, key string) record.Version {
	v := n.seen.version(recentID(ns, key))
	if n.cfg.Held != nil {
		v = max(v, n.cfg.Held(ns, key))
	}
	return v
}

// refuse records that this node refused c for reason, for queries and its
// fleet report, and tells from (the sender of a push or relay, if any).
func (n *Node) refuse(c change, reason, from string) {
	n.m.refusals.WithLabelValues(reason).Inc()
	n.reports.refusedHere(RefusedChange{Namespace: c.rec.Namespace, Key: c.rec.Key, Version: c.rec.Version, Reason: reason})
	if from != "" {
		r := refusal{ack: ack{ns: c.rec.Namespace, key: c.rec.Key, version: c.rec.Version, from: n.cfg.Name}, reason: reason}
		n.enqueue(job{sendTo: from, payload: encodeRefusal(r)}, "refusal")
	}
}

// gotRefusal handles a refusal message: it ends the pusher's retries to
// the refusing member, is passed on like an ack by a relay, and is
// recorded for receipts.
func (n *Node) gotRefusal(r refusal) {
	_, reportTo, found := n.acks.ack(r.ack, &n.rtt)
	if !found {
		reportTo = n.seen.reportTo(recentID(r.ns, r.key), r.version)
	}
	if reportTo != "" {
		n.enqueue(job{sendTo: reportTo, payload: encodeRefusal(r)}, "refusal")
	}
	n.reports.refusedBy(r)
}

// answerQuery answers a member's query: an ack if this node holds that
// version or a newer one, a refusal if it refused that version, and
// nothing otherwise (the asker asks again later).
func (n *Node) answerQuery(q ack) {
	if h := n.held(q.ns, q.key); h >= q.version {
		n.enqueue(job{ackTo: q.from, ack: ack{ns: q.ns, key: q.key, version: h, from: n.cfg.Name}}, "ack")
		return
	}
	if reason := n.reports.refusedOwn(q.ns, q.key, q.version); reason != "" {
		r := refusal{ack: ack{ns: q.ns, key: q.key, version: q.version, from: n.cfg.Name}, reason: reason}
		n.enqueue(job{sendTo: q.from, payload: encodeRefusal(r)}, "refusal")
	}
}

// query asks the named members whether they hold version v of ns/key.
func (n *Node) query(names []string, ns, key string, v record.Version) {
	msg := encodeQuery(ack{ns: ns, key: key, version: v, from: n.cfg.Name})
	for _, name := range names {
		n.enqueue(job{sendTo: name, payload: msg}, "query")
	}
}

// firstQuery is how long a receipt waits for acks of its push before it
// queries the members that did not answer; the wait then doubles, up to
// the report interval.
func (n *Node) firstQuery() time.Duration {
	return max(4*n.cfg.tune.PushAckTimeout, 100*time.Millisecond)
}
