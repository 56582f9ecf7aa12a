package store

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerOptions configure the circuit breaker around Redis (one per node
// of a Redis Cluster).
type BreakerOptions struct {
	// Failures is how many consecutive failed round trips open it.
	Failures uint32
	// OpenFor is how long it stays open before letting probes through.
	OpenFor time.Duration
	// Probes is how many round trips may test Redis while half open.
	Probes uint32
}

// errRefused is a round trip the breaker did not let through: nothing was
// sent, so it is neither a round trip nor a failure of Redis.
var errRefused = errors.New("circuit breaker open")

// breaker wraps gobreaker with a lock-free fast path: while the circuit is
// open and not yet due for a probe, allow answers false from two atomic
// loads, so that a dead Redis costs each request nanoseconds, not a lock,
// a queue slot and a timeout.
type breaker struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// openUntil is when an open circuit may be probed (Unix ns); 0 when
	// the circuit is not open.
	openUntil atomic.Int64
	// state mirrors the gobreaker state for readers that must not lock.
	state   atomic.Int32
	openFor time.Duration
}

func newBreaker(node string, o BreakerOptions, m *Metrics) *breaker {
	if o.Failures < 1 {
		o.Failures = 5
	}
	if o.OpenFor <= 0 {
		o.OpenFor = time.Second
	}
	if o.Probes < 1 {
		o.Probes = 1
	}
	b := &breaker{openFor: o.OpenFor}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        node,
		MaxRequests: o.Probes,
		Timeout:     o.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.Failures },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openUntil.Store(time.Now().Add(o.OpenFor).UnixNano())
			} else {
				b.openUntil.Store(0)
			}
			b.state.Store(int32(to))
			m.breakerState(node, from.String(), to.String())
		},
	})
	m.breakerState(node, "", "closed")
	return b
}

// allow is the fast path: false while the circuit is open and no probe is
// due. When a probe is due, the call goes on to do, where gobreaker lets
// Probes of them through and refuses the rest.
func (b *breaker) allow() bool {
	u := b.openUntil.Load()
	return u == 0 || time.Now().UnixNano() >= u
}

// do runs one round trip through the breaker; errRefused when the breaker
// did not let it through (open, or half open with its probes out).
func (b *breaker) do(f func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, f() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return errRefused
	}
	return err
}

// open reports whether the circuit is open now.
func (b *breaker) open() bool { return b.cb.State() == gobreaker.StateOpen }

// closed reports, without a lock, whether the circuit was closed at its
// last transition (an open circuit due for a probe still reads open).
func (b *breaker) closed() bool { return gobreaker.State(b.state.Load()) == gobreaker.StateClosed }
