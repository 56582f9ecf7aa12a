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

	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// A Redis Cluster store sends each node its share of an Eval's ops on the
// node's own lane, and answers each op by its own node's result: a dead or
// stalled master costs only the ops whose keys live on it, and an op its
// node answered is never reported failed because another node failed.
//
// go-redis' cluster pipeline is not used: on a retryable error
// (TRYAGAIN, ASK, MOVED, LOADING) on the first command of a node's batch,
// or on a connection error after part of a batch ran, it sends the whole
// batch again, scripts already run included, counting their hits twice.
// Here a node's round trip is made on a client of our own that never
// retries, every command is answered alone, and only an op that Redis
// said it did not run (MOVED, ASK, TRYAGAIN, NOSCRIPT) is sent again,
// alone, where Redis points. An op whose round trip failed without an
// answer may have run: it fails, and is never sent again.

// route is where an op goes next after a redirect.
type route struct {
	kind redirect
	// addr is the node a MOVED or an ASK names.
	addr string
}

type redirect uint8

const (
	redirectNone redirect = iota
	redirectMoved
	redirectAsk
	redirectTryAgain
)

// maxRedirects bounds how often one op is sent again in one Eval.
const maxRedirects = 8

// tryAgainPause is the wait before sending an op answered TRYAGAIN (its
// keys are being moved between nodes) again.
const tryAgainPause = 5 * time.Millisecond

type cluster struct {
	cc   *redis.ClusterClient
	opts *RedisOptions
	m    *Metrics

	mu    sync.RWMutex
	lanes map[string]*lane

	// masters are the addresses the prober last found owning slots.
	masters atomic.Pointer[[]string]
	// stateErr is the prober's last failure to read the cluster's
	// topology, nil once it succeeds.
	stateErr atomic.Pointer[error]
	closed   bool
}

func newCluster(cc *redis.ClusterClient, o *RedisOptions, m *Metrics) *cluster {
	return &cluster{cc: cc, opts: o, m: m, lanes: map[string]*lane{}}
}

// group is the ops of one Eval bound to one lane.
type group struct {
	ln  *lane
	ops []*Op
	err error
}

// eval runs ops, each on its key's master, the groups of different nodes
// at once, then sends again, alone, every op Redis said it did not run.
func (c *cluster) eval(ctx context.Context, ops []*Op) error {
	start := time.Now()
	sent := false
	// The common case, every op's keys on one node, takes no grouping.
	if ln := c.oneLane(ctx, ops); ln != nil {
		if err := ln.eval(ops); err != nil {
			for _, op := range ops {
				op.Err, op.route = err, route{}
			}
			return err
		}
		redirected := false
		for _, op := range ops {
			redirected = redirected || op.route.kind != redirectNone
		}
		if !redirected {
			return outcome(ops)
		}
		sent = true
	}
	todo := make([]*Op, 0, len(ops))
	for _, op := range ops {
		switch {
		case sent:
			// Only what Redis said it did not run goes again.
			if op.route.kind != redirectNone {
				todo = append(todo, op)
			}
		case len(op.Limits) == 0:
			op.Err, op.route, op.Applied = nil, route{}, true
		case op.Err == nil:
			todo = append(todo, op)
		}
	}
	first := 0
	if sent {
		first = 1 // the redirected ops' first attempt is made
	}
	for attempt := first; len(todo) > 0; attempt++ {
		if attempt > 0 {
			if attempt > maxRedirects || time.Since(start) > c.opts.Timeout {
				for _, op := range todo {
					op.Err = fmt.Errorf("%w: redirected %d times without an answer", ErrUnavailable, attempt-1)
					op.route = route{}
				}
				break
			}
			for _, op := range todo {
				if op.route.kind == redirectTryAgain {
					time.Sleep(tryAgainPause)
					break
				}
			}
		}
		groups := c.group(ctx, todo)
		c.run(groups)
		todo = todo[:0]
		for _, g := range groups {
			for _, op := range g.ops {
				switch {
				case g.err != nil:
					op.Err, op.route = g.err, route{}
				case op.route.kind != redirectNone:
					todo = append(todo, op)
				}
			}
		}
	}
	return outcome(ops)
}

// oneLane resets ops for an Eval and returns their lane when every op
// has limits and all live on one node; nil otherwise (then each op that
// could not be routed has its Err set).
func (c *cluster) oneLane(ctx context.Context, ops []*Op) *lane {
	var one *lane
	for _, op := range ops {
		op.Err, op.route = nil, route{}
	}
	for _, op := range ops {
		if len(op.Limits) == 0 {
			return nil
		}
		ln, err := c.laneOf(ctx, op)
		if err != nil {
			op.Err = wrapErr(err)
			return nil
		}
		if one != nil && ln != one {
			return nil
		}
		one = ln
	}
	return one
}

// outcome is Eval's error for ops whose Err is set: nil when none failed,
// the first error when all failed, a *PartialError otherwise.
func outcome(ops []*Op) error {
	var first error
	failed, total := 0, 0
	for _, op := range ops {
		total++
		if op.Err != nil {
			failed++
			if first == nil {
				first = op.Err
			}
		}
	}
	switch failed {
	case 0:
		return nil
	case total:
		return first
	}
	return &PartialError{Failed: failed, Total: total, First: first}
}

// group binds each op to the lane of the node it goes to.
func (c *cluster) group(ctx context.Context, ops []*Op) []group {
	var groups []group
	for _, op := range ops {
		ln, err := c.laneOf(ctx, op)
		if err != nil {
			op.Err, op.route = wrapErr(err), route{}
			continue
		}
		i := 0
		for i < len(groups) && groups[i].ln != ln {
			i++
		}
		if i == len(groups) {
			groups = append(groups, group{ln: ln})
		}
		groups[i].ops = append(groups[i].ops, op)
	}
	return groups
}

// run makes each group's round trip on its lane, all at once; the last
// on the caller's goroutine.
func (c *cluster) run(groups []group) {
	var wg sync.WaitGroup
	for i := range groups[:max(len(groups)-1, 0)] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			groups[i].err = groups[i].ln.eval(groups[i].ops)
		}()
	}
	if n := len(groups); n > 0 {
		groups[n-1].err = groups[n-1].ln.eval(groups[n-1].ops)
	}
	wg.Wait()
}

// laneOf is the lane of the node op goes to: where a redirect points,
// else the master that go-redis' view of the cluster gives its key's slot.
func (c *cluster) laneOf(ctx context.Context, op *Op) (*lane, error) {
	switch op.route.kind {
	case redirectMoved, redirectAsk:
		return c.lane(op.route.addr)
	}
	// go-redis' view of the cluster: a round trip only before the first
	// topology is read (bounded by the client's timeouts and ctx).
	node, err := c.cc.MasterForKey(ctx, op.Limits[0].Key)
	if err != nil {
		return nil, err
	}
	return c.lane(node.Options().Addr)
}

// nodeOptions are the options of the store's own client of one node: the
// cluster client's (as go-redis derives its node clients' — reading a
// node client's own Options would race with its first handshake, which
// writes them), never resending, bounded by the caller's deadline.
func nodeOptions(co *redis.ClusterOptions, addr string, pipelines int) *redis.Options {
	o := &redis.Options{
		Addr:                         addr,
		ClientName:                   co.ClientName,
		Dialer:                       co.Dialer,
		OnConnect:                    co.OnConnect,
		Protocol:                     co.Protocol,
		Username:                     co.Username,
		Password:                     co.Password,
		CredentialsProvider:          co.CredentialsProvider,
		CredentialsProviderContext:   co.CredentialsProviderContext,
		StreamingCredentialsProvider: co.StreamingCredentialsProvider,
		// Never send a pipeline again: an op whose answer was lost may
		// have run. Redirects are followed per op, in eval.
		MaxRetries:         -1,
		DialTimeout:        co.DialTimeout,
		DialerRetries:      co.DialerRetries,
		DialerRetryTimeout: co.DialerRetryTimeout,
		DialerRetryBackoff: co.DialerRetryBackoff,
		ReadTimeout:        co.ReadTimeout,
		WriteTimeout:       co.WriteTimeout,
		// The store's timeout bounds each round trip, whatever the socket
		// timeouts.
		ContextTimeoutEnabled: true,
		// The slots' connections, the prober's, and one spare.
		PoolSize:        pipelines + 2,
		PoolTimeout:     co.PoolTimeout,
		ConnMaxIdleTime: co.ConnMaxIdleTime,
		ConnMaxLifetime: co.ConnMaxLifetime,
		ReadBufferSize:  co.ReadBufferSize,
		WriteBufferSize: co.WriteBufferSize,
		DisableIdentity: co.DisableIdentity,
		IdentitySuffix:  co.IdentitySuffix,
		TLSConfig:       co.TLSConfig,
		UnstableResp3:   co.UnstableResp3,
	}
	if co.MaintNotificationsConfig != nil {
		mc := *co.MaintNotificationsConfig
		o.MaintNotificationsConfig = &mc
	}
	return o
}

// lane returns addr's lane, made on first use with a client of the
// store's own: go-redis' node clients retry a failed pipeline whole.
func (c *cluster) lane(addr string) (*lane, error) {
	c.mu.RLock()
	ln, ok := c.lanes[addr]
	c.mu.RUnlock()
	if ok {
		return ln, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ln, ok := c.lanes[addr]; ok {
		return ln, nil
	}
	if c.closed {
		return nil, ErrClosed
	}
	o := nodeOptions(c.cc.Options(), addr, c.opts.Pipelines)
	client := redis.NewClient(o)
	ln = newLane(addr, client, true, c.opts, c.m, nil)
	ln.exec = func(ctx context.Context, conn *redis.Conn, batch []*call) error {
		return c.exec(ctx, ln, conn, batch)
	}
	c.lanes[addr] = ln
	return ln, nil
}

// sent is one op's command in a node's round trip: a script call, or,
// for an op of one fixed-window limit that counts refused hits (plainOp)
// on a node that takes PEXPIRE NX, INCRBY and PEXPIRE NX.
type sent struct {
	op  *Op
	ask bool
	cmd *redis.Cmd
	// incr and exp are a plain op's commands.
	incr, exp *redis.IntCmd
}

// exec is a Cluster lane's round trip: one script call (or one plain
// INCRBY + PEXPIRE NX) per op, pipelined, each answered alone. An op whose
// script Redis did not have (a node that restarted) is sent again with
// EVAL on the same connection.
//
// Only ops of a single key go plain here: the keys of an op share a slot,
// but while the slot moves, Redis answers a command on a key already moved
// with ASK — one INCRBY of an op could run while another is redirected, and
// sending the op again would count the first twice. A script's keys move
// together (TRYAGAIN until they do).
func (c *cluster) exec(ctx context.Context, ln *lane, conn *redis.Conn, batch []*call) error {
	nx := ln.expireNX.Load()
	var all []sent
	for _, cl := range batch {
		for _, op := range cl.ops {
			all = append(all, sent{op: op, ask: op.route.kind == redirectAsk})
			op.route = route{}
		}
	}
	noScript, nodeErr := c.send(ctx, ln, conn, all, false, nx)
	if len(noScript) > 0 && nodeErr == nil {
		_, nodeErr = c.send(ctx, ln, conn, noScript, true, false)
	}
	return nodeErr
}

// send makes one pipelined round trip of ops (EVALSHA or EVAL; INCRBY and
// PEXPIRE NX for a plain op when nx is set), with a
// WAIT last when asked. It answers each op from its own reply and returns
// the ops Redis had no script for, and the node's failure if any.
func (c *cluster) send(ctx context.Context, ln *lane, conn *redis.Conn, ops []sent, eval, nx bool) ([]sent, error) {
	pipe := conn.Pipeline()
	for i := range ops {
		s := &ops[i]
		if nx && len(s.op.Limits) == 1 && plainOp(s.op) {
			l := &s.op.Limits[0]
			s.incr = redis.NewIntCmd(ctx, "incrby", l.Key, int64(s.op.Hits))
			s.exp = redis.NewIntCmd(ctx, "pexpire", l.Key, max(l.TTL, 1), "nx")
			if s.ask {
				// ASKING holds for the next command only.
				pipe.Do(ctx, "asking")
			}
			_ = pipe.Process(ctx, s.incr)
			if s.ask {
				pipe.Do(ctx, "asking")
			}
			_ = pipe.Process(ctx, s.exp)
			continue
		}
		if s.ask {
			pipe.Do(ctx, "asking")
		}
		keys, args := appendOp(nil, nil, s.op)
		if eval {
			s.cmd = script.Eval(ctx, pipe, keys, string(args))
		} else {
			s.cmd = script.EvalSha(ctx, pipe, keys, string(args))
		}
	}
	var wait *redis.Cmd
	if c.opts.Wait.Replicas > 0 {
		wait = waitCmd(ctx, pipe, c.opts.Wait)
	}
	_, _ = pipe.Exec(ctx)
	var noScript []sent
	var nodeErr error
	for _, s := range ops {
		if s.incr != nil {
			if err := c.readPlain(ctx, ln, s); err != nil && (!isRedisError(err) || nodeWide(err)) {
				nodeErr = err
			}
			continue
		}
		err := s.cmd.Err()
		if err == nil {
			var res []any
			if res, err = s.cmd.Slice(); err == nil {
				_, err = readOp(res, 0, s.op)
			}
			if err != nil {
				s.op.Err = wrapErr(err)
			}
			continue
		}
		if !eval && isNoScript(err) {
			noScript = append(noScript, s)
			continue
		}
		if c.redirected(s.op, err) {
			continue
		}
		s.op.Err = wrapErr(err)
		if !isRedisError(err) || nodeWide(err) {
			nodeErr = err
		}
	}
	if wait != nil {
		if err := waited(wait, c.opts.Wait.Replicas); err != nil {
			for _, s := range ops {
				if s.op.Err == nil && s.op.route.kind == redirectNone && s.op.Applied && s.op.Hits > 0 {
					s.op.Err = err
				}
			}
			if nodeErr == nil {
				nodeErr = err
			}
		}
	}
	if nodeErr != nil && (nodeWide(nodeErr) || !isRedisError(nodeErr)) {
		// The node failed, or is no master any more: have go-redis read
		// the topology again (a replica may have been promoted).
		c.cc.ReloadState(ctx)
	}
	return noScript, nodeErr
}

// readPlain answers a plain op from its INCRBY's reply and returns the
// error that failed it, if any. When the INCRBY ran and its PEXPIRE NX did
// not — the key moved to another node in between, or the node refuses NX
// (older than its INFO said: the lane sends scripts from then on) — the
// expiry is set again through the cluster client, which follows
// redirects (PEXPIRE is safe to repeat). A connection lost in between
// leaves the key to the next hit's PEXPIRE NX.
func (c *cluster) readPlain(ctx context.Context, ln *lane, s sent) error {
	n, err := s.incr.Result()
	if err != nil {
		if c.redirected(s.op, err) {
			return nil
		}
		s.op.Err = wrapErr(err)
		return err
	}
	l := &s.op.Limits[0]
	l.State = algo.State{A: n - int64(s.op.Hits)}
	s.op.Applied = true
	if err := s.exp.Err(); err != nil && isRedisError(err) && !nodeWide(err) {
		if msg := err.Error(); !strings.HasPrefix(msg, "MOVED ") && !strings.HasPrefix(msg, "ASK ") && !strings.HasPrefix(msg, "TRYAGAIN") {
			ln.expireNX.Store(false)
		}
		if err := c.cc.Do(ctx, "pexpire", l.Key, max(l.TTL, 1)).Err(); err != nil {
			s.op.Err = wrapErr(err)
			return err
		}
	}
	return nil
}

// redirected reads a MOVED, ASK or TRYAGAIN answer: Redis did not run the
// op, which is sent again, alone, where Redis points.
func (c *cluster) redirected(op *Op, err error) bool {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED "), strings.HasPrefix(msg, "ASK "):
		f := strings.Fields(msg)
		if len(f) != 3 {
			return false
		}
		if _, perr := strconv.Atoi(f[1]); perr != nil {
			return false
		}
		if f[0] == "MOVED" {
			op.route = route{kind: redirectMoved, addr: f[2]}
			c.m.redirect("moved")
			// Later ops of the slot go to its new master directly.
			c.cc.ReloadState(context.Background())
		} else {
			op.route = route{kind: redirectAsk, addr: f[2]}
			c.m.redirect("ask")
		}
		return true
	case strings.HasPrefix(msg, "TRYAGAIN"):
		op.route = route{kind: redirectTryAgain}
		c.m.redirect("tryagain")
		return true
	}
	return false
}

// nodeWide: an error answer that says the node cannot serve writes now,
// whatever the op (rather than this op's own failure).
func nodeWide(err error) bool {
	if errors.Is(err, ErrNotReplicated) {
		return true
	}
	if !isRedisError(err) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"NOREPLICAS", "READONLY", "CLUSTERDOWN", "MASTERDOWN", "LOADING", "OOM", "BUSY", "NOTREADY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// lanesNow is a snapshot of the lanes.
func (c *cluster) lanesNow() map[string]*lane {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]*lane, len(c.lanes))
	for a, ln := range c.lanes {
		out[a] = ln
	}
	return out
}

func (c *cluster) close() {
	c.mu.Lock()
	c.closed = true
	lanes := c.lanes
	c.mu.Unlock()
	for _, ln := range lanes {
		ln.close()
	}
}
