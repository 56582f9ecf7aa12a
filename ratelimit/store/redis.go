package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/redisx"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

//go:embed script.lua
var scriptSource string

var script = redis.NewScript(scriptSource)

// RedisOptions tune the Redis store.
type RedisOptions struct {
	// Timeout bounds one round trip.
	Timeout time.Duration
	// BatchSize is how many concurrent Evals may share one round trip.
	BatchSize int
	// Pipelines is how many round trips may be in flight at once.
	Pipelines int
	// Breaker opens after consecutive failures.
	Breaker BreakerOptions
	// Metrics may be nil.
	Metrics *Metrics
}

// Redis is the shared store. Concurrent Evals share round trips: one Lua
// call carries every op of a batch on a single server or Sentinel (one
// call per op, pipelined, on a Cluster, where each op's keys share a hash
// tag but ops live on different nodes). At most Pipelines round trips are
// in flight. Batching costs no waiting: a round trip takes whatever queued
// while the previous ones were out.
//
// There is no dispatcher goroutine. The caller that finds a free pipeline
// slot leads: it takes the queued calls, makes the round trip on the
// slot's own connection, wakes the others and hands the slot to the next
// queued caller. A caller thus waits for at most one wake-up, and a round
// trip costs no pool checkout (go-redis probes a pooled connection with a
// syscall on every checkout; a slot keeps its connection).
type Redis struct {
	client  redis.UniversalClient
	single  *redis.Client // nil for a Cluster
	opts    RedisOptions
	breaker *breaker
	m       *Metrics

	// warm is set once the parent client has initialised a connection;
	// see slotConn.
	warmMu sync.Mutex
	warm   atomic.Bool

	mu      sync.Mutex
	idle    []*slot
	pending []*call
	closed  bool
	drained *sync.Cond // signalled when a slot goes idle after Close
}

// slot is one pipeline: its connection (single server) and its batch.
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

// NewRedis returns a store on client. It does not connect; Ping says
// whether Redis answers.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.BatchSize < 1 {
		o.BatchSize = 1
	}
	if o.Pipelines < 1 {
		o.Pipelines = 1
	}
	r := &Redis{client: client, opts: o, m: o.Metrics}
	r.single, _ = client.(*redis.Client)
	r.drained = sync.NewCond(&r.mu)
	for i := 0; i < o.Pipelines; i++ {
		r.idle = append(r.idle, &slot{batch: make([]*call, 0, o.BatchSize)})
	}
	r.breaker = newBreaker(o.Breaker, r.m)
	return r
}

// Eval implements Store.
func (r *Redis) Eval(ctx context.Context, ops []*Op) error {
	if !r.breaker.allow() {
		r.m.storeError("breaker_open")
		return ErrUnavailable
	}
	c := callPool.Get().(*call)
	c.ops, c.err, c.lead = ops, nil, nil
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		callPool.Put(c)
		return ErrClosed
	}
	var s *slot
	if n := len(r.idle); n > 0 {
		s = r.idle[n-1]
		r.idle = r.idle[:n-1]
	} else {
		r.pending = append(r.pending, c)
		r.mu.Unlock()
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
		r.mu.Lock()
	}
	s.batch = append(s.batch[:0], c)
	k := min(len(r.pending), r.opts.BatchSize-1)
	s.batch = append(s.batch, r.pending[:k]...)
	r.pending = r.pending[:copy(r.pending, r.pending[k:])]
	r.mu.Unlock()

	r.run(s)
	for _, f := range s.batch[1:] {
		f.done <- struct{}{}
	}
	r.handOff(s)
	err := c.err
	c.ops = nil
	callPool.Put(c)
	return err
}

// handOff gives the slot to the first queued call, or makes it idle.
func (r *Redis) handOff(s *slot) {
	clear(s.batch)
	s.batch = s.batch[:0]
	r.mu.Lock()
	if len(r.pending) > 0 && !r.closed {
		next := r.pending[0]
		r.pending = r.pending[:copy(r.pending, r.pending[1:])]
		r.mu.Unlock()
		next.lead = s
		next.done <- struct{}{}
		return
	}
	r.idle = append(r.idle, s)
	if r.closed {
		r.drained.Broadcast()
	}
	r.mu.Unlock()
}

// warmUp makes the parent client initialise a connection before any slot
// opens its own. go-redis (v9.23) shares one *Options between a client and
// the Conns it hands out, and the first connection handshake writes to it
// (maintenance notifications turned off on a Redis that lacks them) under
// a per-Conn lock: two slots' first handshakes would race. After one
// handshake through the parent the options are settled and only read.
func (r *Redis) warmUp(ctx context.Context) error {
	if r.warm.Load() {
		return nil
	}
	r.warmMu.Lock()
	defer r.warmMu.Unlock()
	if r.warm.Load() {
		return nil
	}
	if err := r.single.Ping(ctx).Err(); err != nil {
		return err
	}
	r.warm.Store(true)
	return nil
}

// run does one round trip for a slot's batch, through the circuit breaker.
func (r *Redis) run(s *slot) {
	batch := s.batch
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	err := r.breaker.do(func() error {
		if r.single == nil {
			return r.runPipelined(ctx, batch)
		}
		if s.conn == nil {
			if err := r.warmUp(ctx); err != nil {
				return err
			}
			s.conn = r.single.Conn()
		}
		err := r.runOne(ctx, s.conn, batch)
		if err != nil {
			// A failed connection may hold half a reply: start afresh.
			_ = s.conn.Close()
			s.conn = nil
		}
		return err
	})
	r.m.roundTrip(time.Since(start), len(batch), err)
	if err != nil {
		for _, c := range batch {
			if c.err == nil {
				c.err = wrapErr(err)
			}
		}
	}
}

func wrapErr(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// runOne sends every op of the batch in one script call (a single server
// or Sentinel: all keys live on one node).
func (r *Redis) runOne(ctx context.Context, conn redis.Scripter, batch []*call) error {
	var keys []string
	var args []byte
	for _, c := range batch {
		for _, op := range c.ops {
			keys, args = appendOp(keys, args, op)
		}
	}
	if len(keys) == 0 {
		for _, c := range batch {
			for _, op := range c.ops {
				op.Applied = true
			}
		}
		return nil
	}
	res, err := evalScript(ctx, conn, keys, string(args))
	if err != nil {
		return err
	}
	pos := 0
	for _, c := range batch {
		for _, op := range c.ops {
			if pos, err = readOp(res, pos, op); err != nil {
				return err
			}
		}
	}
	return nil
}

// runPipelined sends one script call per op (a Cluster: an op's keys
// share a hash tag, different ops may live on different nodes), pipelined;
// go-redis sends each node its share at once.
func (r *Redis) runPipelined(ctx context.Context, batch []*call) error {
	type sent struct {
		c   *call
		op  *Op
		cmd *redis.Cmd
	}
	var all []sent
	pipe := r.client.Pipeline()
	for _, c := range batch {
		for _, op := range c.ops {
			if len(op.Limits) == 0 {
				op.Applied = true
				continue
			}
			keys, args := appendOp(nil, nil, op)
			all = append(all, sent{c, op, script.EvalSha(ctx, pipe, keys, string(args))})
		}
	}
	if len(all) == 0 {
		return nil
	}
	_, _ = pipe.Exec(ctx)
	var retry []sent
	var failed error
	for _, s := range all {
		err := s.cmd.Err()
		if err != nil && isNoScript(err) {
			retry = append(retry, s)
			continue
		}
		if err == nil {
			var res []any
			if res, err = s.cmd.Slice(); err == nil {
				_, err = readOp(res, 0, s.op)
			}
		}
		if err != nil {
			s.c.err = wrapErr(err)
			failed = err
		}
	}
	// A node that restarted lost its script cache: send those ops with
	// EVAL, which loads the script again.
	for _, s := range retry {
		keys, args := appendOp(nil, nil, s.op)
		res, err := script.Eval(ctx, r.client, keys, string(args)).Slice()
		if err == nil {
			_, err = readOp(res, 0, s.op)
		}
		if err != nil {
			s.c.err = wrapErr(err)
			failed = err
		}
	}
	return failed
}

func evalScript(ctx context.Context, c redis.Scripter, keys []string, args string) ([]any, error) {
	res, err := script.EvalSha(ctx, c, keys, args).Slice()
	if err != nil && isNoScript(err) {
		res, err = script.Eval(ctx, c, keys, args).Slice()
	}
	return res, err
}

func isNoScript(err error) bool { return strings.HasPrefix(err.Error(), "NOSCRIPT") }

// appendOp adds an op's keys and numbers in the script's layout.
func appendOp(keys []string, args []byte, op *Op) ([]string, []byte) {
	args = strconv.AppendInt(args, opNow(op), 10)
	args = append(args, ' ')
	args = strconv.AppendUint(args, op.Hits, 10)
	switch {
	case op.Refund:
		args = append(args, " 2 "...)
	case op.CountRefused:
		args = append(args, " 1 "...)
	default:
		args = append(args, " 0 "...)
	}
	args = strconv.AppendInt(args, int64(len(op.Limits)), 10)
	for i := range op.Limits {
		l := &op.Limits[i]
		var p1, p2 int64
		switch l.Spec.Kind {
		case algo.Sliding:
			p1, p2 = l.Clock.Start, l.Clock.End
			keys = append(keys, l.Key, l.PrevKey)
		case algo.GCRA:
			p1, p2 = l.Spec.Emission, int64(l.Spec.Burst)
			keys = append(keys, l.Key)
		default:
			keys = append(keys, l.Key)
		}
		args = append(args, ' ')
		args = strconv.AppendInt(args, int64(l.Spec.Kind), 10)
		args = append(args, ' ')
		args = strconv.AppendUint(args, l.Spec.Limit, 10)
		args = append(args, ' ')
		args = strconv.AppendInt(args, p1, 10)
		args = append(args, ' ')
		args = strconv.AppendInt(args, p2, 10)
		args = append(args, ' ')
		args = strconv.AppendInt(args, max(l.TTL, 1), 10)
	}
	return keys, append(args, ' ')
}

func opNow(op *Op) int64 {
	if len(op.Limits) == 0 {
		return 0
	}
	return op.Limits[0].Clock.Now
}

// readOp reads one op's answer at res[pos:] and returns the next position.
func readOp(res []any, pos int, op *Op) (int, error) {
	need := 1 + 2*len(op.Limits)
	if len(res) < pos+need {
		return pos, fmt.Errorf("ratelimit script answered %d values; want at least %d", len(res), pos+need)
	}
	applied, ok := res[pos].(int64)
	if !ok {
		return pos, fmt.Errorf("ratelimit script answered %T", res[pos])
	}
	op.Applied = applied == 1
	for i := range op.Limits {
		a, ok1 := res[pos+1+2*i].(int64)
		b, ok2 := res[pos+2+2*i].(int64)
		if !ok1 || !ok2 {
			return pos, fmt.Errorf("ratelimit script answered a non-integer state")
		}
		op.Limits[i].State = algo.State{A: a, B: b}
	}
	return pos + need, nil
}

// Ping implements Store: every master of a Cluster must answer.
func (r *Redis) Ping(ctx context.Context) error {
	return redisx.Ping(ctx, r.client)
}

// Close fails queued Evals with ErrClosed, waits for the round trips in
// flight and closes the slots' connections. The client is the caller's.
func (r *Redis) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	for _, c := range r.pending {
		c.err = ErrClosed
		c.done <- struct{}{}
	}
	r.pending = nil
	for len(r.idle) < r.opts.Pipelines {
		r.drained.Wait()
	}
	for _, s := range r.idle {
		if s.conn != nil {
			_ = s.conn.Close()
			s.conn = nil
		}
	}
	return nil
}
