// Package store keeps rate limit counters: in Redis (one server, Sentinel
// or Cluster, through go-redis' UniversalClient) shared by every replica,
// or in process for a single replica. Both run the algorithms of package
// algo on the same key layout, so they answer alike.
//
// The unit of work is an Op: the limits of one descriptor, evaluated
// atomically — all of them admit the hits and all count them, or none
// counts (unless the op counts refused hits, as envoyproxy/ratelimit does).
// The keys of one op share a Redis Cluster hash tag, so the Redis store
// runs each op as one Lua script call in one slot.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// Op is one descriptor's limits, evaluated atomically.
type Op struct {
	// Hits is what the request adds (0: look without counting).
	Hits uint64
	// CountRefused adds the hits even when a limit refuses them.
	CountRefused bool
	// Refund gives the hits back (Envoy's is_negative_hits) instead of
	// adding them: always applied, no counter goes below zero
	// (algo.Spec.Refund).
	Refund bool
	Limits []LimitOp

	// Applied is set by Eval: the hits were counted.
	Applied bool
	// Err is set by Eval when it returns a *PartialError: this op's
	// outcome is unknown (nil: Applied and the States are the store's
	// answer). Read it only then.
	Err error

	// route is where a Redis Cluster store sends the op next.
	route route
}

// LimitOp is one limit of an op.
type LimitOp struct {
	Spec  *algo.Spec
	Clock algo.Clock
	// Key holds the count of the current window (fixed, sliding) or the
	// bucket (gcra); PrevKey the count of the previous window (sliding).
	Key, PrevKey string
	// TTL is how long Key must live after this request, in milliseconds.
	TTL int64

	// State is set by Eval: the state before this op.
	State algo.State
}

// Store evaluates ops.
type Store interface {
	// Eval runs each op atomically and fills in Applied and the States.
	// An error means no op's outcome is known, except a *PartialError:
	// then each op's Err says whether its outcome is known.
	Eval(ctx context.Context, ops []*Op) error
	// Ping reports whether the store can be reached now.
	Ping(ctx context.Context) error
	// Close stops background work.
	Close() error
}

// Errors of the stores.
var (
	// ErrUnavailable: the store cannot be reached (or its circuit
	// breaker is open); answer by the failure mode.
	ErrUnavailable = errors.New("ratelimit store unavailable")
	// ErrFull: the in-process store holds its maximum of keys.
	ErrFull = errors.New("ratelimit in-process store is full")
	// ErrClosed: the store was closed (a reload replaced it).
	ErrClosed = errors.New("ratelimit store closed")
	// ErrNotReplicated: the op was applied on the master but fewer
	// replicas than RedisOptions.Wait asks acknowledged it in time; it
	// wraps ErrUnavailable, and the answer follows the failure mode.
	ErrNotReplicated = fmt.Errorf("%w: not acknowledged by enough replicas", ErrUnavailable)
)

// PartialError is Eval's error when some ops' outcomes are known and
// others' are not (a Redis Cluster node failed while others answered):
// each op's Err says which. It wraps ErrUnavailable, so a caller that
// does not look at the ops answers them all by the failure mode.
type PartialError struct {
	// Failed is how many ops failed, of Total.
	Failed, Total int
	// First is the first failed op's error.
	First error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%d of %d ops failed: %v", e.Failed, e.Total, e.First)
}

// Unwrap makes errors.Is(err, ErrUnavailable) hold.
func (e *PartialError) Unwrap() error { return ErrUnavailable }

// counters is the key/value interface the Go evaluation of an op runs on;
// the in-process store implements it, Redis runs the Lua twin of eval.
type counters interface {
	get(key string, now int64) int64
	// incr adds by (which may be negative) and returns the new value; a
	// new key lives ttlMillis, an existing one keeps its expiry.
	incr(key string, by int64, ttlMillis int64, now int64) int64
	set(key string, v int64, ttlMillis int64, now int64)
	del(key string)
}

// eval runs op on kv exactly as script.lua does on Redis.
func eval(op *Op, kv counters) {
	ok := true
	for i := range op.Limits {
		l := &op.Limits[i]
		switch l.Spec.Kind {
		case algo.Sliding:
			l.State = algo.State{A: kv.get(l.PrevKey, l.Clock.Now), B: kv.get(l.Key, l.Clock.Now)}
		default:
			l.State = algo.State{A: kv.get(l.Key, l.Clock.Now)}
		}
		if !l.Spec.Allowed(l.State, l.Clock, op.Hits) {
			ok = false
		}
	}
	op.Applied = ok || op.CountRefused || op.Refund
	if !op.Applied || op.Hits == 0 {
		return
	}
	if op.Refund {
		refund(op, kv)
		return
	}
	for i := range op.Limits {
		l := &op.Limits[i]
		switch l.Spec.Kind {
		case algo.GCRA:
			tat := max(l.State.A, l.Clock.Now) + int64(op.Hits)*l.Spec.Emission
			kv.set(l.Key, tat, max(1, ceilDiv(tat-l.Clock.Now, 1000)), l.Clock.Now)
		default:
			kv.incr(l.Key, int64(op.Hits), l.TTL, l.Clock.Now)
		}
	}
}

// refund gives an op's hits back, as the script's mode 2 and
// algo.Spec.Refund: counters are decremented (never below zero, keeping
// their expiry), a GCRA bucket's arrival time moves back (never before
// now; at now the bucket is full and its key is deleted).
func refund(op *Op, kv counters) {
	h := int64(op.Hits)
	for i := range op.Limits {
		l := &op.Limits[i]
		now := l.Clock.Now
		switch l.Spec.Kind {
		case algo.GCRA:
			if l.State.A > now {
				if tat := l.State.A - h*l.Spec.Emission; tat > now {
					kv.set(l.Key, tat, ceilDiv(tat-now, 1000), now)
				} else {
					kv.del(l.Key)
				}
			}
		case algo.Sliding:
			c := min(max(l.State.B, 0), h)
			if c > 0 {
				kv.incr(l.Key, -c, l.TTL, now)
			}
			if p := min(max(l.State.A, 0), h-c); p > 0 {
				kv.incr(l.PrevKey, -p, l.TTL, now)
			}
		default:
			if c := min(max(l.State.A, 0), h); c > 0 {
				kv.incr(l.Key, -c, l.TTL, now)
			}
		}
	}
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
