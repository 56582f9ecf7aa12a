package store

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// OverLimitCache remembers counter keys that refuse any request until a
// known time (the end of a fixed window, the moment a sliding window's
// estimate or a GCRA bucket has room for one more hit), so that a flood of
// refused requests is answered without a round trip. It only ever refuses
// what the store would refuse, so it never admits more than the store:
// replicas stay exact. Each config gets a new one.
type OverLimitCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	n      atomic.Int64
	max    int
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]int64 // key → refused until (Unix µs)
}

// NewOverLimitCache returns a cache of at most maxEntries keys, or nil
// (a valid, always-empty cache) when maxEntries is 0.
func NewOverLimitCache(maxEntries int) *OverLimitCache {
	if maxEntries <= 0 {
		return nil
	}
	c := &OverLimitCache{seed: maphash.MakeSeed(), max: max(1, maxEntries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[string]int64{}
	}
	return c
}

// Until returns when key stops refusing, or 0 when it is not known to
// refuse at now.
func (c *OverLimitCache) Until(key string, now int64) int64 {
	if c == nil || c.n.Load() == 0 {
		return 0
	}
	sh := &c.shards[maphash.String(c.seed, key)%cacheShards]
	sh.mu.RLock()
	until, ok := sh.m[key]
	sh.mu.RUnlock()
	if !ok || until <= now {
		return 0
	}
	return until
}

// Add records that key refuses every request until the given time.
func (c *OverLimitCache) Add(key string, until, now int64) {
	if c == nil || until <= now {
		return
	}
	sh := &c.shards[maphash.String(c.seed, key)%cacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.max {
		for k, u := range sh.m {
			if u <= now {
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
	sh.m[key] = until
}

// Len is the number of keys held, expired ones included until swept.
func (c *OverLimitCache) Len() int {
	if c == nil {
		return 0
	}
	return int(c.n.Load())
}
