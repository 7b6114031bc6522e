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

// closingSpaces returns the namespaces whose Policy fails closed, found
// once: the freshness table is fixed at Open. A short slice scanned in
// order costs a hit less than a map lookup (few namespaces fail closed:
// keys alone, by default).
func (n *Node) closingSpaces() []closingSpace {
	if p := n.closing.Load(); p != nil {
		return *p
	}
	var list []closingSpace
	for ns, s := range n.fresh.spaces {
		if s.policy.FailsClosed() {
			list = append(list, closingSpace{ns, s})
		}
	}
	n.closing.Store(&list)
	return list
}

// mayServeFresh reports whether a fresh value of ns may be served as it is:
// ns does not fail closed, or is not failing now.
func (n *Node) mayServeFresh(ns string) bool {
	for _, c := range n.closingSpaces() {
		if c.name == ns {
			return !c.s.failing.Load()
		}
	}
	return true
}

// freshHit answers a read of ns/key held fresh in a namespace that may serve
// it (see mayServeFresh); ok false means the read must go the whole way.
func (n *Node) freshHit(ns, key string) (cache.Hit, bool) {
	if !n.mayServeFresh(ns) {
		return cache.Hit{}, false
	}
	return n.cache.GetFresh(ns, key)
}
