package store

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// OverLimitCache remembers descriptors the store has found past their
// limit, with the state of their counters, so that a flood of refused
// requests is answered without a round trip.
//
// An entry is exact, not a guess: until Until, the counters it holds
// cannot change in a way that changes an answer (a refused request of an
// all-or-nothing rule counts nothing; a rule that counts refused hits is
// cached only once strictly past its limit, where more hits keep it past),
// so the limiter decides from the cached state exactly as it would from
// the store's. No replica answers differently for holding an entry. Only
// a refund (is_negative_hits) on another replica changes cached counters;
// the limiter bounds Until by localCache.maxAge for that.
// Each config gets a new cache.
type OverLimitCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	n      atomic.Int64
	max    int
}

// CacheEntry is what the cache holds of one descriptor's counters.
type CacheEntry struct {
	// Until is when the entry stops answering (Unix µs).
	Until int64
	// Rule identifies the rule the states were read for.
	Rule int
	// States are the counters' states after the store's last answer, one
	// per limit of the rule, in order.
	States []algo.State
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*CacheEntry
}

// NewOverLimitCache returns a cache of at most maxEntries keys, or nil
// (a valid, always-empty cache) when maxEntries is 0.
func NewOverLimitCache(maxEntries int) *OverLimitCache {
	if maxEntries <= 0 {
		return nil
	}
	c := &OverLimitCache{seed: maphash.MakeSeed(), max: max(1, maxEntries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[string]*CacheEntry{}
	}
	return c
}

func (c *OverLimitCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// Get returns key's entry, or nil when there is none in force at now.
// The entry must not be modified.
func (c *OverLimitCache) Get(key string, now int64) *CacheEntry {
	if c == nil || c.n.Load() == 0 {
		return nil
	}
	sh := c.shard(key)
	sh.mu.RLock()
	e := sh.m[key]
	sh.mu.RUnlock()
	if e == nil || e.Until <= now {
		return nil
	}
	return e
}

// Add records e under key (it must not be modified afterwards).
func (c *OverLimitCache) Add(key string, e *CacheEntry, now int64) {
	if c == nil || e.Until <= now {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.max {
		for k, old := range sh.m {
			if old.Until <= now {
				delete(sh.m, k)
				c.n.Add(-1)
			}
		}
		if len(sh.m) >= c.max {
			return
		}
	}
	if _, ok := sh.m[key]; !ok {
		c.n.Add(1)
	}
	sh.m[key] = e
}

// Remove forgets key (a refund changed its counters).
func (c *OverLimitCache) Remove(key string) {
	if c == nil || c.n.Load() == 0 {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	if _, ok := sh.m[key]; ok {
		delete(sh.m, key)
		c.n.Add(-1)
	}
	sh.mu.Unlock()
}

// Len is the number of keys held, expired ones included until swept.
func (c *OverLimitCache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.n.Load())
}
