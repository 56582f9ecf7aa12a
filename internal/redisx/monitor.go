package redisx

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Monitor pings Redis (every master of a Cluster) in the background and
// answers readiness from its last result, so that /readyz answers at once
// instead of waiting out a PING while Redis fails over (a Kubernetes
// probe gives up after one second by default).
type Monitor struct {
	c     redis.UniversalClient
	every time.Duration
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex
	at   time.Time // when the last ping ended
	err  error
	once sync.Once
}

// NewMonitor starts pinging c every `every`, each ping bounded by timeout.
// Stop it with Close.
func NewMonitor(c redis.UniversalClient, every, timeout time.Duration) *Monitor {
	m := &Monitor{c: c, every: every, stop: make(chan struct{}), done: make(chan struct{})}
	go m.loop(timeout)
	return m
}

func (m *Monitor) loop(timeout time.Duration) {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := Ping(ctx, m.c)
		cancel()
		m.mu.Lock()
		m.at, m.err = time.Now(), err
		m.mu.Unlock()
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
	}
}

// Err is the last ping's failure, or an error when no ping ended lately
// (a ping in flight longer than a few periods has failed too).
func (m *Monitor) Err() error {
	m.mu.Lock()
	at, err := m.at, m.err
	m.mu.Unlock()
	switch {
	case at.IsZero():
		return fmt.Errorf("redis: no answer to a ping yet")
	case err != nil:
		return fmt.Errorf("redis: %w (%s ago)", err, time.Since(at).Round(time.Millisecond))
	case time.Since(at) > 4*m.every:
		return fmt.Errorf("redis: no answer to a ping for %s", time.Since(at).Round(time.Millisecond))
	}
	return nil
}

// Close stops the pings.
func (m *Monitor) Close() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}
