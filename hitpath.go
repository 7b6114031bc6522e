package dataplane

import "github.com/dataplane/dataplane/cache"

// The read path's fast lane. A read of a value held and fresh needs, of the
// node, only to know that its namespace is not failing closed (a fresh
// value is never refused otherwise: Policy.RefuseOutdated concerns stale
// values); it is answered by cache.GetFresh, which copies nothing. Every
// other read goes the whole way (Node.read), with the same answers and
// counts as before: the lane only skips work whose outcome it knows.

// closingSpace is a namespace whose Policy fails closed.
type closingSpace struct {
	name string
	s    *nsFreshness
}

// findClosing lists, once, the namespaces whose Policy fails closed: the
// freshness table is fixed at Open. A short slice scanned in order costs a
// hit less than a map lookup (few namespaces fail closed: keys alone, by
// default).
func (n *Node) findClosing() *[]closingSpace {
	var list []closingSpace
	for ns, s := range n.fresh.spaces {
		if s.policy.FailsClosed() {
			list = append(list, closingSpace{ns, s})
		}
	}
	n.closing.Store(&list)
	return &list
}

// freshHit answers a read of ns/key held fresh, unless ns fails closed and
// is failing now (the read must then go the whole way, to apply the
// policy); ok false means the read must go the whole way.
func (n *Node) freshHit(ns, key string) (cache.Hit, bool) {
	p := n.closing.Load()
	if p == nil {
		p = n.findClosing()
	}
	for _, c := range *p {
		if c.name == ns && c.s.failing.Load() {
			return cache.Hit{}, false
		}
	}
	return n.cache.GetFresh(ns, key)
}
