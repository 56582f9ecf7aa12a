package idempotency

import (
	"context"
	"sync"
	"time"
)

// Memory is the in-process Store: exact for one replica, invisible to
// others. It holds at most maxKeys keys; when full, Begin fails with
// ErrUnavailable (the route's failure mode decides) rather than growing
// without bound.
type Memory struct {
	mu  sync.Mutex
	m   map[string]memEntry
	now func() time.Time
	max int
	ops int
}

type memEntry struct {
	v   []byte
	exp time.Time
}

// NewMemory returns an empty store for at most maxKeys keys.
func NewMemory(maxKeys int) *Memory {
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Memory{m: map[string]memEntry{}, now: time.Now, max: maxKeys}
}

// get returns the live value of key, dropping it when expired.
func (s *Memory) get(key string, now time.Time) ([]byte, bool) {
	e, ok := s.m[key]
	if ok && !now.Before(e.exp) {
		delete(s.m, key)
		return nil, false
	}
	return e.v, ok
}

// sweep drops some expired keys every 64 writes, so a store that only
// grows still sheds what has expired.
func (s *Memory) sweep(now time.Time) {
	if s.ops++; s.ops%64 != 0 && len(s.m) < s.max {
		return
	}
	n := 0
	for k, e := range s.m {
		if !now.Before(e.exp) {
			delete(s.m, k)
		}
		if n++; n >= 1024 {
			break
		}
	}
}

// Begin implements Store.
func (s *Memory) Begin(_ context.Context, key string, fp Fingerprint, o Owner, lock time.Duration) (Outcome, *Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	if v, ok := s.get(key, now); ok {
		return outcome(v, fp)
	}
	if len(s.m) >= s.max {
		return 0, nil, unavailable("begin", errFull)
	}
	s.m[key] = memEntry{v: []byte(lockValue(fp, o)), exp: now.Add(lock)}
	return Acquired, nil, nil
}

// Complete implements Store.
func (s *Memory) Complete(_ context.Context, key string, fp Fingerprint, o Owner, r *Record, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if v, ok := s.get(key, now); !ok || string(v) != lockValue(fp, o) {
		return false, nil
	}
	s.m[key] = memEntry{v: doneValue(fp, r), exp: now.Add(ttl)}
	return true, nil
}

// Release implements Store.
func (s *Memory) Release(_ context.Context, key string, fp Fingerprint, o Owner) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.get(key, s.now()); ok && string(v) == lockValue(fp, o) {
		delete(s.m, key)
	}
	return nil
}

// Ping implements Store; memory is always reachable.
func (s *Memory) Ping(context.Context) error { return nil }

// Shared implements Store.
func (s *Memory) Shared() bool { return false }

type fullError struct{}

func (fullError) Error() string {
	return "in-process store is full (extproc.idempotency.memoryMaxKeys)"
}

var errFull = fullError{}
