package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// BenchmarkFixedWindowCommands compares, on a private redis-server, what a
// fixed-window hit costs Redis (and the caller) by the store's Lua script
// and by plain INCRBY + PEXPIRE NX (Redis 7: the expiry is set only on the
// key's first hit), both pipelined, for batches of 1 op (what the store
// sends a Redis Cluster node per op) and 16 ops; lua-one-call is the
// store's way on one server, every op of a batch in one script call.
// The plain commands fit a rule that counts refused hits (the reference's:
// the count after the hit decides), not gatehouse's all-or-nothing rules,
// which must not count a refused hit. redis-us/op is Redis' own CPU
// (INFO cpu), the figure that bounds a shared or hot node.
//
// Measured on the 2-core machine (redis 7.0, 10,000 keys): see
// docs/ratelimit.md, "Scaling".
func BenchmarkFixedWindowCommands(b *testing.B) {
	srv := testenv.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 4})
	b.Cleanup(func() { c.Close() })
	ctx := context.Background()
	spec := &algo.Spec{Kind: algo.Fixed, Limit: 1 << 40}
	now := time.Now().UnixMicro()
	clock := algo.Clock{Now: now, Start: now - now%1e6, End: now - now%1e6 + 1e6}
	const nkeys = 10000
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:{user-%d}:f1s:%d", i, clock.Start/1e6)
	}
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("lua/batch=%d", batch), func(b *testing.B) {
			ops := make([]*Op, batch)
			for i := range ops {
				ops[i] = &Op{Hits: 1, CountRefused: true, Limits: []LimitOp{{Spec: spec, Clock: clock, TTL: 2000}}}
			}
			measure(b, c, batch, func(i int) error {
				pipe := c.Pipeline()
				cmds := make([]*redis.Cmd, batch)
				for j, op := range ops {
					op.Limits[0].Key = keys[(i*batch+j)%nkeys]
					ks, args := appendOp(nil, nil, op)
					cmds[j] = script.EvalSha(ctx, pipe, ks, string(args))
				}
				if _, err := pipe.Exec(ctx); err != nil && !isNoScript(err) {
					return err
				}
				for j, cmd := range cmds {
					if cmd.Err() != nil && isNoScript(cmd.Err()) {
						ks, args := appendOp(nil, nil, ops[j])
						if err := script.Eval(ctx, c, ks, string(args)).Err(); err != nil {
							return err
						}
					}
				}
				return nil
			})
		})
		b.Run(fmt.Sprintf("lua-one-call/batch=%d", batch), func(b *testing.B) {
			ops := make([]*Op, batch)
			for i := range ops {
				ops[i] = &Op{Hits: 1, CountRefused: true, Limits: []LimitOp{{Spec: spec, Clock: clock, TTL: 2000}}}
			}
			measure(b, c, batch, func(i int) error {
				var ks []string
				var args []byte
				for j, op := range ops {
					op.Limits[0].Key = keys[(i*batch+j)%nkeys]
					ks, args = appendOp(ks, args, op)
				}
				_, err := evalScript(ctx, c, ks, string(args))
				return err
			})
		})
		b.Run(fmt.Sprintf("incrby+pexpire/batch=%d", batch), func(b *testing.B) {
			measure(b, c, batch, func(i int) error {
				pipe := c.Pipeline()
				incr := make([]*redis.IntCmd, batch)
				for j := range batch {
					k := keys[(i*batch+j)%nkeys]
					incr[j] = pipe.IncrBy(ctx, k, 1)
					pipe.Do(ctx, "PEXPIRE", k, 2000, "NX")
				}
				_, err := pipe.Exec(ctx)
				for _, cmd := range incr {
					// The count after the hit decides: before = after - hits.
					if cmd.Val() < 1 {
						return fmt.Errorf("INCRBY answered %d", cmd.Val())
					}
				}
				return err
			})
		})
	}
}

// measure runs op b.N times (each a round trip of batch ops) and reports
// Redis' CPU per op.
func measure(b *testing.B, c *redis.Client, batch int, op func(i int) error) {
	ctx := context.Background()
	if err := c.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	cpu0 := redisCPU(b, c)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((redisCPU(b, c)-cpu0).Microseconds())/float64(b.N*batch), "redis-us/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/hit")
}

// redisCPU is the CPU time the server has used (INFO cpu).
func redisCPU(b *testing.B, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
