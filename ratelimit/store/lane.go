package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// lane batches the Evals of one Redis node: a single server, the master
// of a Sentinel set, or one master of a Redis Cluster. Each lane has its
// own circuit breaker, its own round trips bounded by the store's
// timeout, and its own record of recent results (health), so that a
// failing or stalled node affects only the ops whose keys live on it.
//
// Concurrent Evals share round trips. At most Pipelines round trips are in
// flight. Batching costs no waiting: a round trip takes whatever queued
// while the previous ones were out. There is no dispatcher goroutine. The
// caller that finds a free pipeline slot leads: it takes the queued calls,
// makes the round trip on the slot's own connection, wakes the others and
// hands the slot to the next queued caller. A caller thus waits for at
// most one wake-up, and a round trip costs no pool checkout (go-redis
// probes a pooled connection with a syscall on every checkout; a slot
// keeps its connection).
type lane struct {
	addr   string
	client *redis.Client
	// own is set when the store made client and must close it.
	own     bool
	opts    *RedisOptions
	m       *Metrics
	breaker *breaker
	health  health
	// exec makes one round trip for a batch on conn. It fills in each
	// call's outcome (c.err, or its ops' Err) and returns the node's
	// failure, if any, for the breaker, the health record and the metrics.
	exec func(ctx context.Context, conn *redis.Conn, batch []*call) error

	// warm is set once the client has initialised a connection; see warmUp.
	warmMu sync.Mutex
	warm   atomic.Bool
	// expireNX is set when the node takes PEXPIRE's NX option (Redis 7
	// and later, read from INFO at warm-up): ops that fit plain commands
	// (plainOp) are sent as INCRBY + PEXPIRE NX instead of the script.
	expireNX atomic.Bool

	mu      sync.Mutex
	idle    []*slot
	pending []*call
	closed  bool
	drained *sync.Cond // signalled when a slot goes idle after close
}

// slot is one pipeline: its connection and its batch.
type slot struct {
	conn  *redis.Conn
	batch []*call
}

type call struct {
	ops  []*Op
	err  error
	done chan struct{}
	// lead is set when a finishing leader hands its slot to this call.
	lead *slot
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// errOpen answers the calls an open circuit breaker refuses.
var errOpen = fmt.Errorf("%w: %v", ErrUnavailable, errRefused)

func newLane(addr string, client *redis.Client, own bool, o *RedisOptions, m *Metrics,
	exec func(context.Context, *redis.Conn, []*call) error) *lane {
	ln := &lane{addr: addr, client: client, own: own, opts: o, m: m, exec: exec}
	ln.drained = sync.NewCond(&ln.mu)
	for i := 0; i < o.Pipelines; i++ {
		ln.idle = append(ln.idle, &slot{batch: make([]*call, 0, o.BatchSize)})
	}
	ln.breaker = newBreaker(addr, o.Breaker, m)
	return ln
}

// eval runs ops on this lane's node. An error means no op's outcome is
// known; otherwise an exec that answers per op (a Cluster node's) may
// have set some ops' Err.
func (ln *lane) eval(ops []*Op) error {
	if !ln.breaker.allow() {
		ln.m.refused(1)
		return errOpen
	}
	c := callPool.Get().(*call)
	c.ops, c.err, c.lead = ops, nil, nil
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		callPool.Put(c)
		return ErrClosed
	}
	var s *slot
	if n := len(ln.idle); n > 0 {
		s = ln.idle[n-1]
		ln.idle = ln.idle[:n-1]
	} else {
		ln.pending = append(ln.pending, c)
		ln.mu.Unlock()
		// The round trip that answers this call is bounded by Timeout;
		// waiting for it (rather than for ctx) keeps the call ours until
		// its leader is done with it.
		<-c.done
		if c.lead == nil {
			err := c.err
			c.ops = nil
			callPool.Put(c)
			return err
		}
		s, c.lead = c.lead, nil
		ln.mu.Lock()
	}
	s.batch = append(s.batch[:0], c)
	k := min(len(ln.pending), ln.opts.BatchSize-1)
	s.batch = append(s.batch, ln.pending[:k]...)
	ln.pending = ln.pending[:copy(ln.pending, ln.pending[k:])]
	ln.mu.Unlock()

	ln.run(s)
	for _, f := range s.batch[1:] {
		f.done <- struct{}{}
	}
	ln.handOff(s)
	err := c.err
	c.ops = nil
	callPool.Put(c)
	return err
}

// handOff gives the slot to the first queued call, or makes it idle.
func (ln *lane) handOff(s *slot) {
	clear(s.batch)
	s.batch = s.batch[:0]
	ln.mu.Lock()
	if len(ln.pending) > 0 && !ln.closed {
		next := ln.pending[0]
		ln.pending = ln.pending[:copy(ln.pending, ln.pending[1:])]
		ln.mu.Unlock()
		next.lead = s
		next.done <- struct{}{}
		return
	}
	ln.idle = append(ln.idle, s)
	if ln.closed {
		ln.drained.Broadcast()
	}
	ln.mu.Unlock()
}

// warmUp makes the client initialise a connection before any slot opens
// its own. go-redis (v9.23) shares one *Options between a client and the
// Conns it hands out, and the first connection handshake writes to it
// (maintenance notifications turned off on a Redis that lacks them) under
// a per-Conn lock: two slots' first handshakes would race. After one
// handshake through the client the options are settled and only read.
func (ln *lane) warmUp(ctx context.Context) error {
	if ln.warm.Load() {
		return nil
	}
	ln.warmMu.Lock()
	defer ln.warmMu.Unlock()
	if ln.warm.Load() {
		return nil
	}
	if err := ln.client.Ping(ctx).Err(); err != nil {
		return err
	}
	info, err := ln.client.Info(ctx, "server").Result()
	if err != nil && !isRedisError(err) {
		return err
	}
	// A server that hides INFO (some proxies and managed offerings) is
	// sent the script only: correct everywhere, dearer in Redis CPU.
	ln.expireNX.Store(err == nil && versionAtLeast(info, 7) && !ln.opts.ScriptOnly)
	ln.warm.Store(true)
	return nil
}

// versionAtLeast reports whether INFO's redis_version has a major version
// of at least major.
func versionAtLeast(info string, major int) bool {
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:")
		if !ok {
			continue
		}
		m, _, _ := strings.Cut(v, ".")
		n, err := strconv.Atoi(m)
		return err == nil && n >= major
	}
	return false
}

// run does one round trip for a slot's batch, through the circuit breaker.
func (ln *lane) run(s *slot) {
	batch := s.batch
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), ln.opts.Timeout)
	defer cancel()
	sent := false
	err := ln.breaker.do(func() error {
		sent = true
		if s.conn == nil {
			if err := ln.warmUp(ctx); err != nil {
				failAll(batch, err)
				return err
			}
			s.conn = ln.client.Conn()
		}
		err := ln.exec(ctx, s.conn, batch)
		if err != nil && (!isRedisError(err) || strings.HasPrefix(err.Error(), "READONLY")) && !errors.Is(err, errShortAck) {
			// A failed connection may hold half a reply, and one to a
			// master turned replica (a Sentinel failover) must be dialled
			// again, to the new master: start afresh.
			_ = s.conn.Close()
			s.conn = nil
		}
		return err
	})
	ln.health.used.Store(time.Now().UnixNano())
	if !sent {
		// Refused by an open or half-open breaker: nothing was sent.
		ln.m.refused(len(batch))
		failAll(batch, errRefused)
		return
	}
	ln.m.roundTrip(time.Since(start), len(batch), err)
	ln.health.record(err)
}

// failAll fails every call of a batch that has no outcome yet.
func failAll(batch []*call, err error) {
	err = wrapErr(err)
	for _, c := range batch {
		if c.err == nil {
			c.err = err
		}
	}
}

func wrapErr(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, errRefused) {
		return errOpen
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// isRedisError: Redis answered an error; the connection is still in step.
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// close fails queued calls with ErrClosed, waits for the round trips in
// flight and closes the slots' connections (and the client, if the store
// made it).
func (ln *lane) close() {
	ln.mu.Lock()
	if ln.closed {
		ln.mu.Unlock()
		return
	}
	ln.closed = true
	for _, c := range ln.pending {
		c.err = ErrClosed
		c.done <- struct{}{}
	}
	ln.pending = nil
	for len(ln.idle) < ln.opts.Pipelines {
		ln.drained.Wait()
	}
	for _, s := range ln.idle {
		if s.conn != nil {
			_ = s.conn.Close()
			s.conn = nil
		}
	}
	ln.mu.Unlock()
	if ln.own {
		_ = ln.client.Close()
	}
}
