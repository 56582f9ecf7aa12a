package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
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

// Redis is the shared store. Concurrent Evals are queued and sent
// together: one Lua call per round trip on a single server (one per op,
// pipelined, on a Cluster, where each op's keys share one slot), with at
// most Pipelines round trips in flight. Batching costs no waiting: a
// round trip takes whatever queued while the previous one was out.
type Redis struct {
	client  redis.UniversalClient
	cluster bool
	opts    RedisOptions
	breaker *breaker
	m       *Metrics

	queue chan *call
	stop  chan struct{}
	wg    sync.WaitGroup
	// mu orders Eval's enqueue before Close: once closed is set no call
	// enters the queue, and the workers fail what is left in it.
	mu     sync.RWMutex
	closed bool
}

type call struct {
	ops  []*Op
	err  error
	done chan struct{}
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
	_, cluster := client.(*redis.ClusterClient)
	r := &Redis{
		client:  client,
		cluster: cluster,
		opts:    o,
		m:       o.Metrics,
		queue:   make(chan *call, 4096),
		stop:    make(chan struct{}),
	}
	r.breaker = newBreaker(o.Breaker, r.m)
	for i := 0; i < o.Pipelines; i++ {
		r.wg.Add(1)
		go r.worker()
	}
	return r
}

// Eval implements Store.
func (r *Redis) Eval(ctx context.Context, ops []*Op) error {
	if !r.breaker.allow() {
		r.m.storeError("breaker_open")
		return ErrUnavailable
	}
	c := callPool.Get().(*call)
	c.ops, c.err = ops, nil
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		callPool.Put(c)
		return ErrClosed
	}
	select {
	case r.queue <- c:
		r.mu.RUnlock()
	case <-ctx.Done():
		r.mu.RUnlock()
		callPool.Put(c)
		return ctx.Err()
	}
	// The round trip is bounded by Timeout; waiting for it (rather than for
	// ctx) keeps the call's memory ours until the worker is done with it.
	<-c.done
	err := c.err
	c.ops = nil
	callPool.Put(c)
	return err
}

func (r *Redis) worker() {
	defer r.wg.Done()
	batch := make([]*call, 0, r.opts.BatchSize)
	for {
		select {
		case <-r.stop:
			// Fail what is still queued, so that no Eval waits forever.
			for {
				select {
				case c := <-r.queue:
					c.err = ErrClosed
					c.done <- struct{}{}
				default:
					return
				}
			}
		case c := <-r.queue:
			batch = append(batch[:0], c)
		drain:
			for len(batch) < r.opts.BatchSize {
				select {
				case c := <-r.queue:
					batch = append(batch, c)
				default:
					break drain
				}
			}
			r.run(batch)
			for _, c := range batch {
				c.done <- struct{}{}
			}
		}
	}
}

// run does one round trip for a batch, through the circuit breaker.
func (r *Redis) run(batch []*call) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	err := r.breaker.do(func() error {
		if r.cluster {
			return r.runPipelined(ctx, batch)
		}
		return r.runOne(ctx, batch)
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
func (r *Redis) runOne(ctx context.Context, batch []*call) error {
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
	res, err := evalScript(ctx, r.client, keys, string(args))
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
	if op.CountRefused {
		args = append(args, " 1 "...)
	} else {
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

// Close stops the workers; queued Evals fail with ErrClosed. The client is
// the caller's to close.
func (r *Redis) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.wg.Wait()
	return nil
}
