package idempotency

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Each step is one script on one key, so it is atomic in Redis and works
// unchanged on Redis Cluster.
var (
	// KEYS[1] key; ARGV[1] lock value, ARGV[2] lock ms. Returns nil when
	// the key was claimed, else the value found.
	beginScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)
	// KEYS[1] key; ARGV[1] lock value, ARGV[2] done value, ARGV[3] ttl ms.
	completeScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)
	// KEYS[1] key; ARGV[1] lock value.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
)

// Redis is the Store shared by every replica.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis wraps a client; keys are prefixed with prefix.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

// Begin implements Store.
func (s *Redis) Begin(ctx context.Context, key string, fp Fingerprint, o Owner, lock time.Duration) (Outcome, *Record, error) {
	v, err := beginScript.Run(ctx, s.c, []string{s.prefix + key}, lockValue(fp, o), lock.Milliseconds()).Text()
	if errors.Is(err, redis.Nil) {
		return Acquired, nil, nil
	}
	if err != nil {
		return 0, nil, unavailable("begin", err)
	}
	return outcome([]byte(v), fp)
}

// Complete implements Store.
func (s *Redis) Complete(ctx context.Context, key string, fp Fingerprint, o Owner, r *Record, ttl time.Duration) (bool, error) {
	n, err := completeScript.Run(ctx, s.c, []string{s.prefix + key}, lockValue(fp, o), doneValue(fp, r), ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable("complete", err)
	}
	return n == 1, nil
}

// Release implements Store.
func (s *Redis) Release(ctx context.Context, key string, fp Fingerprint, o Owner) error {
	if err := releaseScript.Run(ctx, s.c, []string{s.prefix + key}, lockValue(fp, o)).Err(); err != nil {
		return unavailable("release", err)
	}
	return nil
}

// Ping implements Store.
func (s *Redis) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Shared implements Store.
func (s *Redis) Shared() bool { return true }
