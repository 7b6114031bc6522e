package dataplane

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/dataplane/dataplane/internal/bearer"
	"github.com/dataplane/dataplane/origin/httporigin/wire"
	"github.com/dataplane/dataplane/record"
)

// SnapshotSource hands over a whole namespace. A node that starts while the
// origin is down and has no local snapshot file warms from its peers
// through this (Config.Peers): an httporigin.Store pointed at the peers'
// SnapshotHandler is one, since it speaks the cache nodes' snapshot API.
type SnapshotSource interface {
	GetSnapshot(ctx context.Context, ns string) (record.Snapshot, error)
}

// snapshotsPath is where SnapshotHandler answers (HTTPPeer asks there).
const snapshotsPath = wire.SnapshotsPath

// Snapshot returns what the node knows of namespace ns: the values it
// holds, and in Known the versions of the keys whose value it does not hold
// (evicted, or announced without one) or holds only in an older version,
// deletes included. Its Version is the node's change-log cursor (every
// change at or below it has been applied), so whoever loads the snapshot
// resumes the log from where this node is, not from its oldest entry. It
// never reads the origin and is safe for concurrent use.
func (n *Node) Snapshot(ns string) record.Snapshot {
	return *n.snapshots([]string{ns})[ns]
}

// snapshots builds Snapshot for each of namespaces in one pass over the
// cache.
func (n *Node) snapshots(namespaces []string) map[string]*record.Snapshot {
	// Read before the cache: what the cache holds is at least as new.
	cursor := n.follower.Cursor()
	byNS := make(map[string]*record.Snapshot, len(namespaces))
	for _, ns := range namespaces {
		byNS[ns] = &record.Snapshot{Namespace: ns, Version: cursor}
	}
	for e := range n.cache.All() {
		s := byNS[e.Record.Namespace]
		if s == nil || e.Record.Version == 0 {
			continue
		}
		s.Records = append(s.Records, e.Record)
	}
	for ns, s := range byNS {
		if ts := n.trust.space(ns); ts != nil {
			// A matched checkpoint's version is held whole, whatever
			// the cursor (see trust): the snapshot is at least there.
			ts.mu.Lock()
			if ts.matched != nil {
				s.Version = max(s.Version, ts.matched.Version)
			}
			ts.mu.Unlock()
		}
		for c := range n.cache.Index(ns) {
			if e, ok := n.cache.Peek(ns, c.Key); !ok || e.Record.Version < c.Version {
				s.Known = append(s.Known, c)
			}
		}
	}
	return byNS
}

// SnapshotHandler serves GET /v1/snapshots/{namespace} with what node holds
// of the namespace (Node.Snapshot), in the cache nodes' wire format, or,
// with ?proof=1, proven by the last checkpoint the node matched
// (Node.ProvenSnapshot, MarshalProvenSnapshot; 404 when it has none), so that
// a peer starting while the origin is down can warm from this node (see
// Config.Peers). Only namespaces the node loads whole (Config.Namespaces)
// are served, and only once the node is warm itself. Requests must carry
// token as a bearer token (bearer.Require: constant time, and an empty
// token serves nobody, since a snapshot holds every route and key). Mount
// it on an admin listener, not on a public one.
func SnapshotHandler(node *Node, token string) http.Handler {
	return bearer.Require(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(status int, code wire.Code, msg string) {
			b, _ := json.Marshal(wire.Error{Error: msg, Code: code})
			w.Header().Set("Content-Type", wire.ContentTypeJSON)
			w.WriteHeader(status)
			w.Write(append(b, '\n'))
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			fail(http.StatusMethodNotAllowed, wire.CodeNoRoute, "method not allowed")
			return
		}
		ns, ok := strings.CutPrefix(r.URL.Path, wire.SnapshotsPath)
		if !ok || record.ValidateNamespace(ns) != nil {
			fail(http.StatusNotFound, wire.CodeNoRoute, "no such endpoint")
			return
		}
		if !slices.Contains(node.cfg.Namespaces, ns) || !node.Ready() {
			// A node that is not warm itself must not warm others with a
			// partial namespace.
			fail(http.StatusNotFound, wire.CodeNotFound, "namespace "+ns+" is not held whole by this node")
			return
		}
		if r.URL.Query().Get("proof") == "1" {
			// Proven by the last checkpoint the node's state matched
			// (see Node.ProvenSnapshot).
			snap, proof, err := node.ProvenSnapshot(ns)
			if err != nil {
				fail(http.StatusNotFound, wire.CodeNotFound, err.Error())
				return
			}
			b, err := MarshalProvenSnapshot(snap, proof)
			if err != nil {
				fail(http.StatusInternalServerError, wire.CodeUnavailable, "encoding the snapshot: "+err.Error())
				return
			}
			w.Header().Set("Content-Type", ContentTypeProvenSnapshot)
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Header().Set("Cache-Control", "no-store")
			w.Write(b)
			return
		}
		b, err := record.MarshalSnapshot(node.Snapshot(ns))
		if err != nil {
			fail(http.StatusInternalServerError, wire.CodeUnavailable, "encoding the snapshot: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeSnapshot)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	}))
}
