package s3

import (
	"sync"

	"github.com/dataplane/dataplane/record"
)

// etagEntry is what a Store last saw of one record object.
type etagEntry struct {
	version record.Version
	etag    string
}

// etagCache remembers the ETag of the latest version this Store read or
// wrote per object, bounded in size. A nil *etagCache remembers nothing.
// Entries may be outdated (another writer moved on); every use of one is a
// conditional request that the server checks, so that only costs a request.
type etagCache struct {
	max int

	mu sync.Mutex // guards m
	m  map[string]etagEntry
}

func newETagCache(max int) *etagCache {
	if max <= 0 {
		return nil
	}
	return &etagCache{max: max, m: make(map[string]etagEntry)}
}

func (c *etagCache) get(name string) (etagEntry, bool) {
	if c == nil {
		return etagEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	return e, ok
}

// put remembers etag for version v of name unless a newer version is
// already remembered (responses may arrive out of order).
func (c *etagCache) put(name string, v record.Version, etag string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if etag == "" {
		delete(c.m, name)
		return
	}
	if old, ok := c.m[name]; ok && old.version > v {
		return
	}
	if _, ok := c.m[name]; !ok && len(c.m) >= c.max {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[name] = etagEntry{version: v, etag: etag}
}

func (c *etagCache) forget(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, name)
}

// forgetETag forgets name only if etag is still what is remembered, so a
// loser of a race does not erase what the winner just remembered.
func (c *etagCache) forgetETag(name, etag string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[name].etag == etag {
		delete(c.m, name)
	}
}
