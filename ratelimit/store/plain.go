package store

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// Ops of the reference's kind — fixed windows that count refused hits —
// need nothing read before the write: the count after the hits decides.
// Such an op is sent as plain commands, per limit INCRBY and PEXPIRE NX
// (the expiry set on the key's first hit only), not through the script:
// a third to a fifth of the script's Redis CPU per hit
// (BenchmarkFixedWindowCommands), which is what bounds a busy Redis.
// INCRBY is atomic per key and the op's limits are independent (each
// counts whatever the others say), so the answers are the script's.
// A key whose PEXPIRE did not run (a connection lost between the two) is
// healed by the next hit's PEXPIRE NX.

// plainOp reports whether op is sent as plain commands when the node takes
// PEXPIRE NX.
func plainOp(op *Op) bool {
	if op.Refund || !op.CountRefused || op.Hits == 0 || len(op.Limits) == 0 {
		return false
	}
	for i := range op.Limits {
		if op.Limits[i].Spec.Kind != algo.Fixed {
			return false
		}
	}
	return true
}

// plainCall reports whether every op of a call is a plainOp. A call's ops
// go one way, all plain or all through the script, so that they apply in
// their order; the calls of a batch are concurrent requests, which any
// order serves.
func plainCall(c *call) bool {
	for _, op := range c.ops {
		if !plainOp(op) {
			return false
		}
	}
	return len(c.ops) > 0
}

// plainCmd is one limit of a plain op in a round trip.
type plainCmd struct {
	c    *call
	op   *Op
	l    *LimitOp
	incr *redis.IntCmd
	exp  *redis.IntCmd
}

func appendPlain(cmds []plainCmd, c *call, op *Op) []plainCmd {
	for i := range op.Limits {
		cmds = append(cmds, plainCmd{c: c, op: op, l: &op.Limits[i]})
	}
	return cmds
}

// queuePlain queues each command's INCRBY and PEXPIRE NX on pipe.
func queuePlain(ctx context.Context, pipe redis.Pipeliner, cmds []plainCmd) {
	for i := range cmds {
		p := &cmds[i]
		p.incr = redis.NewIntCmd(ctx, "incrby", p.l.Key, int64(p.op.Hits))
		p.exp = redis.NewIntCmd(ctx, "pexpire", p.l.Key, max(p.l.TTL, 1), "nx")
		_ = pipe.Process(ctx, p.incr)
		_ = pipe.Process(ctx, p.exp)
	}
}

// readPlain answers the plain ops from their replies: the state before
// the op is the count INCRBY answered less the hits. A failed connection
// or a node that cannot take writes now fails the whole round trip (its
// error is returned); any other error answer fails its own call. A node
// that refuses PEXPIRE's NX (an older Redis behind the version INFO gave,
// a Sentinel failover to one) gets the expiries again without NX, and the
// lane sends the script from then on.
func (ln *lane) readPlain(ctx context.Context, conn *redis.Conn, cmds []plainCmd) error {
	var again []plainCmd
	for i := range cmds {
		p := &cmds[i]
		n, err := p.incr.Result()
		if err == nil {
			p.l.State = algo.State{A: n - int64(p.op.Hits)}
			p.op.Applied = true
			err = p.exp.Err()
			if err != nil && isRedisError(err) && !nodeWide(err) {
				again = append(again, *p)
				continue
			}
		}
		if err == nil {
			continue
		}
		if !isRedisError(err) || nodeWide(err) {
			return err
		}
		if p.c.err == nil {
			p.c.err = wrapErr(err)
		}
	}
	if len(again) == 0 {
		return nil
	}
	ln.expireNX.Store(false)
	pipe := conn.Pipeline()
	for _, p := range again {
		pipe.Do(ctx, "pexpire", p.l.Key, max(p.l.TTL, 1))
	}
	_, err := pipe.Exec(ctx)
	return err
}
