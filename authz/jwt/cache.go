package jwt

import (
	"sync"
	"sync/atomic"
)

// cache holds verified tokens keyed by the SHA-256 of the token, so that
// a hot token costs a hash and a map read instead of a signature check.
// Tokens themselves are never stored. It is bounded (random eviction when
// a shard is full: cheap, and fair enough for a working set that fits)
// and an entry never outlives the token's exp, nor a fetch of its
// issuer's keys that removed or replaced a key (Verified.stale).
type cache struct {
	shards   [cacheShards]cacheShard
	perShard int
	hits     atomic.Uint64
	misses   atomic.Uint64
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[[32]byte]cacheEntry
}

type cacheEntry struct {
	v     *Verified
	until int64 // unix nanos
}

func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]cacheEntry)
	}
	return c
}

func (c *cache) get(k *[32]byte, now int64) *Verified {
	v := c.peek(k, now)
	if v == nil {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return v
}

// peek is get without counting the lookup.
func (c *cache) peek(k *[32]byte, now int64) *Verified {
	s := &c.shards[k[0]%cacheShards]
	s.mu.RLock()
	e, ok := s.m[*k]
	s.mu.RUnlock()
	if !ok || now >= e.until || e.v.stale() {
		return nil
	}
	return e.v
}

func (c *cache) put(k *[32]byte, v *Verified, until int64, now int64) {
	s := &c.shards[k[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, exists := s.m[*k]; !exists && len(s.m) >= c.perShard {
		// Drop expired entries first, then any one (map order is random).
		n := 0
		for key, e := range s.m {
			if now >= e.until || n >= 8 {
				delete(s.m, key)
				if len(s.m) < c.perShard {
					break
				}
			}
			n++
		}
	}
	s.m[*k] = cacheEntry{v: v, until: until}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
