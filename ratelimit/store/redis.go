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
	// Timeout bounds one round trip to one node.
	Timeout time.Duration
	// BatchSize is how many concurrent Evals may share one round trip.
	BatchSize int
	// Pipelines is how many round trips may be in flight at once (per
	// node of a Cluster).
	Pipelines int
	// Breaker opens after consecutive failures (one breaker per node of a
	// Cluster).
	Breaker BreakerOptions
	// Wait, when Replicas > 0, follows every round trip with a WAIT: an
	// op applied on the master but acknowledged by fewer replicas within
	// Wait.Timeout fails with ErrNotReplicated (its hits stay counted on
	// the master; the answer follows the failure mode). Off by default.
	Wait WaitOptions
	// ScriptOnly sends every op through the Lua script, even those that
	// fit plain INCRBY + PEXPIRE NX on a Redis 7 (plain.go): for a server
	// that claims a version it does not implement, and for tests that
	// hold the two ways to the same answers.
	ScriptOnly bool
	// KeyPrefix prefixes the keys the store's probes write.
	KeyPrefix string
	// ProbeEvery is how often a node no request reached lately is probed
	// with a write, to keep readiness current (default 500ms).
	ProbeEvery time.Duration
	// Metrics may be nil.
	Metrics *Metrics
}

// WaitOptions ask the master to confirm replication before an answer.
type WaitOptions struct {
	// Replicas is how many replicas must acknowledge each round trip's
	// writes (0: do not wait).
	Replicas int
	// Timeout bounds the wait; it counts against the round trip's Timeout.
	Timeout time.Duration
}

// Redis is the shared store, on a single server, Sentinel or Redis
// Cluster. Every node has a lane (lane.go): its own batches, breaker,
// timeout and health. On a single server or Sentinel one Lua call carries
// every op of a batch; on a Cluster each op's keys share a hash tag but
// ops live on different nodes, so an Eval's ops are grouped by node, each
// node gets one pipelined round trip of one call per op, and each op is
// answered by its own node's result (cluster.go).
type Redis struct {
	opts RedisOptions
	m    *Metrics
	// one is the lane of a single server or Sentinel; cl the Cluster's.
	one *lane
	cl  *cluster

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    atomic.Bool
}

// NewRedis returns a store on client, a *redis.Client (single server or
// Sentinel's failover client) or a *redis.ClusterClient. It does not
// connect on the callers' path; a background prober writes to each node
// no request reached lately, so that Ready is current.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.BatchSize < 1 {
		o.BatchSize = 1
	}
	if o.Pipelines < 1 {
		o.Pipelines = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = 500 * time.Millisecond
	}
	r := &Redis{opts: o, m: o.Metrics, stop: make(chan struct{})}
	switch c := client.(type) {
	case *redis.ClusterClient:
		r.cl = newCluster(c, &r.opts, r.m)
	case *redis.Client:
		name := c.Options().Addr
		if name == "FailoverClient" {
			// go-redis' name for a Sentinel client: the master moves.
			name = "sentinel master"
		}
		r.one = newLane(name, c, false, &r.opts, r.m, r.execOne)
	default:
		r.one = nil
	}
	if r.one != nil || r.cl != nil {
		r.wg.Add(1)
		go r.probeLoop()
	}
	return r
}

// errClient: NewRedis was given a client it cannot drive.
var errClient = errors.New("ratelimit redis store: the client is neither a *redis.Client nor a *redis.ClusterClient")

// Eval implements Store.
func (r *Redis) Eval(ctx context.Context, ops []*Op) error {
	switch {
	case r.closed.Load():
		return ErrClosed
	case r.one != nil:
		return r.one.eval(ops)
	case r.cl != nil:
		return r.cl.eval(ctx, ops)
	}
	return errClient
}

// execOne sends every op of the batch in one script call (a single server
// or Sentinel: all keys live on one node), followed by a WAIT when asked.
func (r *Redis) execOne(ctx context.Context, conn *redis.Conn, batch []*call) error {
	err := r.runOne(ctx, conn, batch)
	if err != nil && !errors.Is(err, ErrNotReplicated) {
		failAll(batch, err)
	}
	return err
}

func (r *Redis) runOne(ctx context.Context, conn *redis.Conn, batch []*call) error {
	nx := r.one.expireNX.Load()
	var keys []string
	var args []byte
	var plain []plainCmd
	for _, c := range batch {
		if nx && plainCall(c) {
			for _, op := range c.ops {
				plain = appendPlain(plain, c, op)
			}
			continue
		}
		for _, op := range c.ops {
			keys, args = appendOp(keys, args, op)
		}
	}
	if len(keys) == 0 && len(plain) == 0 {
		for _, c := range batch {
			for _, op := range c.ops {
				op.Applied = true
			}
		}
		return nil
	}
	var res []any
	var err, notReplicated error
	if len(plain) > 0 || r.opts.Wait.Replicas > 0 {
		res, notReplicated, err = r.pipelined(ctx, conn, plain, keys, string(args))
	} else {
		res, err = evalScript(ctx, conn, keys, string(args))
	}
	if err != nil {
		return err
	}
	pos := 0
	for _, c := range batch {
		if nx && plainCall(c) {
			continue
		}
		for _, op := range c.ops {
			switch {
			case len(keys) == 0:
				op.Applied = true // no limits: nothing to count
			default:
				if pos, err = readOp(res, pos, op); err != nil {
					return err
				}
			}
		}
	}
	if notReplicated != nil {
		// Only a call whose hits were counted can be lost with its master;
		// the others' answers stand.
		for _, c := range batch {
			for _, op := range c.ops {
				if op.Applied && op.Hits > 0 {
					c.err = notReplicated
					break
				}
			}
		}
	}
	return notReplicated
}

// pipelined makes one round trip of the plain ops' commands, the script
// call for the other ops (when keys is not empty) and a WAIT when asked.
// It answers the plain ops itself and returns the script's reply. A
// script Redis did not have is sent again with EVAL (and the WAIT after
// it); the plain commands, applied already, are not. When fewer replicas
// than asked acknowledge, the writes stand on the master alone:
// notReplicated says so.
func (r *Redis) pipelined(ctx context.Context, conn *redis.Conn, plain []plainCmd, keys []string, args string) (res []any, notReplicated, err error) {
	for attempt := 0; ; attempt++ {
		pipe := conn.Pipeline()
		if attempt == 0 {
			queuePlain(ctx, pipe, plain)
		}
		var cmd *redis.Cmd
		switch {
		case len(keys) == 0:
		case attempt == 0:
			cmd = script.EvalSha(ctx, pipe, keys, args)
		default:
			cmd = script.Eval(ctx, pipe, keys, args)
		}
		var wait *redis.Cmd
		if r.opts.Wait.Replicas > 0 {
			wait = waitCmd(ctx, pipe, r.opts.Wait)
		}
		_, _ = pipe.Exec(ctx)
		if attempt == 0 {
			if err := r.one.readPlain(ctx, conn, plain); err != nil {
				return nil, nil, err
			}
		}
		if cmd != nil {
			res, err = cmd.Slice()
			if err != nil && attempt == 0 && isNoScript(err) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
		}
		if wait != nil {
			notReplicated = waited(wait, r.opts.Wait.Replicas)
		}
		return res, notReplicated, nil
	}
}

// waitCmd queues a WAIT for o.Replicas, bounded by o.Timeout, on pipe.
func waitCmd(ctx context.Context, pipe redis.Pipeliner, o WaitOptions) *redis.Cmd {
	return pipe.Do(ctx, "wait", o.Replicas, max(o.Timeout.Milliseconds(), 1))
}

// waited is nil when a WAIT saw enough replicas acknowledge.
func waited(w *redis.Cmd, want int) error {
	n, err := w.Int64()
	if err != nil {
		if isRedisError(err) {
			return fmt.Errorf("%w: WAIT: %v", errShortAck, err)
		}
		return fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
	}
	if n < int64(want) {
		return fmt.Errorf("%w: %d of %d in time", errShortAck, n, want)
	}
	return nil
}

// errShortAck: WAIT answered, with too few replicas; the connection is
// still in step.
var errShortAck = fmt.Errorf("%w", ErrNotReplicated)

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

// Ping implements Store: every master of a Cluster must answer. It makes
// round trips; readiness uses Ready, which does not.
func (r *Redis) Ping(ctx context.Context) error {
	switch {
	case r.one != nil:
		return redisx.Ping(ctx, r.one.client)
	case r.cl != nil:
		return redisx.Ping(ctx, r.cl.cc)
	}
	return errClient
}

// Close fails queued Evals with ErrClosed, waits for the round trips in
// flight, stops the prober and closes the store's own connections. The
// client is the caller's.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		close(r.stop)
		r.wg.Wait()
		if r.one != nil {
			r.one.close()
		}
		if r.cl != nil {
			r.cl.close()
		}
	})
	return nil
}
