package store

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
)

// Memory is the in-process store: the embedded default when no Redis is
// configured (one replica). Keys are spread over shards by their hash tag,
// the part Redis Cluster would place them by, so the keys of one op always
// share a shard and an op takes a single lock.
type Memory struct {
	seed      maphash.Seed
	shards    [memShards]memShard
	maxPerSh  int
	closeOnce sync.Once
}

const memShards = 64

type memShard struct {
	mu      sync.Mutex
	m       map[string]memEntry
	inserts int
	full    bool
}

type memEntry struct {
	v int64
	// exp is when the entry expires (Unix µs, by the ops' clock).
	exp int64
}

// NewMemory returns an in-process store holding at most maxKeys keys
// (0: a million). A full store refuses new keys with ErrFull, which the
// limiter answers by the failure mode, rather than grow without bound.
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = 1_000_000
	}
	m := &Memory{seed: maphash.MakeSeed(), maxPerSh: max(1, maxKeys/memShards)}
	for i := range m.shards {
		m.shards[i].m = map[string]memEntry{}
	}
	return m
}

// Eval implements Store.
func (m *Memory) Eval(_ context.Context, ops []*Op) error {
	for _, op := range ops {
		if len(op.Limits) == 0 {
			op.Applied = true
			continue
		}
		sh := &m.shards[maphash.String(m.seed, hashTag(op.Limits[0].Key))%memShards]
		sh.mu.Lock()
		kv := shardKV{sh: sh, max: m.maxPerSh}
		eval(op, &kv)
		sh.mu.Unlock()
		if kv.full {
			return ErrFull
		}
	}
	return nil
}

// Ping implements Store; the in-process store is always there.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// Len returns the number of keys held (for tests and metrics).
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// hashTag returns the part of key Redis Cluster hashes: between the first
// '{' and the next '}', when not empty; else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// shardKV runs eval on one locked shard.
type shardKV struct {
	sh   *memShard
	max  int
	full bool
}

func (s *shardKV) get(key string, now int64) int64 {
	e, ok := s.sh.m[key]
	if !ok || e.exp <= now {
		return 0
	}
	return e.v
}

func (s *shardKV) incr(key string, by, ttl, now int64) int64 {
	e, ok := s.sh.m[key]
	if !ok || e.exp <= now {
		if !s.room(now) {
			return 0
		}
		e = memEntry{exp: now + ttl*1000}
	}
	e.v += by
	s.sh.m[key] = e
	return e.v
}

func (s *shardKV) del(key string) { delete(s.sh.m, key) }

func (s *shardKV) set(key string, v, ttl, now int64) {
	if _, ok := s.sh.m[key]; !ok && !s.room(now) {
		return
	}
	s.sh.m[key] = memEntry{v: v, exp: now + ttl*1000}
}

// room makes room for a new key: every so many inserts, and whenever the
// shard is full, expired keys are swept.
func (s *shardKV) room(now int64) bool {
	sh := s.sh
	sh.inserts++
	if sh.inserts >= 1024 || len(sh.m) >= s.max {
		sh.inserts = 0
		for k, e := range sh.m {
			if e.exp <= now {
				delete(sh.m, k)
			}
		}
	}
	if len(sh.m) >= s.max {
		s.full = true
		return false
	}
	return true
}
