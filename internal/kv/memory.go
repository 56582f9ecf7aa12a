package kv

import (
	"context"
	"sync"
	"time"
)

// Memory is the in-process Store: exact for one replica, invisible to
// others. Expired keys are dropped lazily and by a sweep bounded per call.
type Memory struct {
	mu   sync.Mutex
	m    map[string]entry
	now  func() time.Time
	ops  int
	maxN int
}

type entry struct {
	v   []byte
	exp time.Time
}

// NewMemory returns an empty in-process store holding at most maxKeys
// keys (0 = 1,000,000); when full, SetNX and Set fail with ErrUnavailable
// rather than growing without bound.
func NewMemory(maxKeys int) *Memory {
	if maxKeys <= 0 {
		maxKeys = 1_000_000
	}
	return &Memory{m: map[string]entry{}, now: time.Now, maxN: maxKeys}
}

func (s *Memory) live(k string, now time.Time) (entry, bool) {
	e, ok := s.m[k]
	if ok && !e.exp.IsZero() && !now.Before(e.exp) {
		delete(s.m, k)
		return entry{}, false
	}
	return e, ok
}

// sweep drops some expired keys; called with the lock held, every 64 ops.
func (s *Memory) sweep(now time.Time) {
	s.ops++
	if s.ops%64 != 0 {
		return
	}
	s.dropExpired(now)
}

// dropExpired looks at up to 256 keys and drops those expired.
func (s *Memory) dropExpired(now time.Time) {
	n := 0
	for k, e := range s.m {
		if !e.exp.IsZero() && !now.Before(e.exp) {
			delete(s.m, k)
		}
		if n++; n >= 256 {
			break
		}
	}
}

func (s *Memory) put(k string, v []byte, ttl time.Duration, now time.Time) error {
	if _, exists := s.m[k]; !exists && len(s.m) >= s.maxN {
		// Full, perhaps of expired keys: make room before refusing, so
		// that a burst of keys now past their TTL does not refuse
		// writes (bounded work: a store full of live keys stays cheap).
		s.dropExpired(now)
		if len(s.m) >= s.maxN {
			return ErrUnavailable
		}
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	s.m[k] = entry{v: append([]byte(nil), v...), exp: exp}
	return nil
}

// SetNX implements Store.
func (s *Memory) SetNX(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	if _, ok := s.live(key, now); ok {
		return false, nil
	}
	if err := s.put(key, value, ttl, now); err != nil {
		return false, err
	}
	return true, nil
}

// Get implements Store.
func (s *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key, s.now())
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), e.v...), true, nil
}

// Set implements Store.
func (s *Memory) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	return s.put(key, value, ttl, now)
}

// Delete implements Store.
func (s *Memory) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Ping implements Store; memory is always reachable.
func (s *Memory) Ping(context.Context) error { return nil }

// Shared implements Store.
func (s *Memory) Shared() bool { return false }
