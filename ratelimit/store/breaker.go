package store

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerOptions configure the circuit breaker around Redis.
type BreakerOptions struct {
	// Failures is how many consecutive failed round trips open it.
	Failures uint32
	// OpenFor is how long it stays open before letting probes through.
	OpenFor time.Duration
	// Probes is how many round trips may test Redis while half open.
	Probes uint32
}

// breaker wraps gobreaker with a lock-free fast path: while the circuit is
// open and not yet due for a probe, allow answers false from two atomic
// loads, so that a dead Redis costs each request nanoseconds, not a lock,
// a queue slot and a timeout.
type breaker struct {
	cb *gobreaker.CircuitBreaker[struct{}]
	// openUntil is when an open circuit may be probed (Unix ns); 0 when
	// the circuit is not open.
	openUntil atomic.Int64
	openFor   time.Duration
}

func newBreaker(o BreakerOptions, m *Metrics) *breaker {
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
		Name:        "redis",
		MaxRequests: o.Probes,
		Timeout:     o.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.Failures },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openUntil.Store(time.Now().Add(o.OpenFor).UnixNano())
			} else {
				b.openUntil.Store(0)
			}
			m.breakerState(from.String(), to.String())
		},
	})
	m.breakerState("", "closed")
	return b
}

// allow is the fast path: false while the circuit is open and no probe is
// due. When a probe is due, the call goes on to do, where gobreaker lets
// Probes of them through and refuses the rest.
func (b *breaker) allow() bool {
	u := b.openUntil.Load()
	return u == 0 || time.Now().UnixNano() >= u
}

// do runs one round trip through the breaker.
func (b *breaker) do(f func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, f() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return ErrUnavailable
	}
	return err
}

// open reports whether the circuit is open now.
func (b *breaker) open() bool { return b.cb.State() == gobreaker.StateOpen }
