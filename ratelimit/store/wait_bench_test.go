package store

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkWait measures what store.wait costs: one-op Evals from 32
// goroutines on a master with one replica, without WAIT and with WAIT for
// the replica (same run, same servers; compare the two ns/op).
//
//	go test -run '^$' -bench BenchmarkWait -benchtime 3s ./ratelimit/store
func BenchmarkWait(b *testing.B) {
	s := testenv.StartRedisSentinel(b, 1)
	client := redis.NewClient(&redis.Options{Addr: s.Servers[0].Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer client.Close()
	prefix := testenv.KeyPrefix(b)
	for _, mode := range []struct {
		name string
		wait WaitOptions
	}{
		{"async", WaitOptions{}},
		{"wait-1-replica", WaitOptions{Replicas: 1, Timeout: 50 * time.Millisecond}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			rs := NewRedis(client, RedisOptions{Timeout: time.Second, BatchSize: 128, Pipelines: 2, Wait: mode.wait})
			defer rs.Close()
			var failed, n atomic.Int64
			b.SetParallelism(16) // 32 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := n.Add(1)
				for pb.Next() {
					op := countOp(prefix + "{b" + strconv.FormatInt(i%64, 10) + "}")
					if err := rs.Eval(context.Background(), []*Op{op}); err != nil {
						failed.Add(1)
					}
				}
			})
			// A WAIT that times out (the replica lagging on a loaded
			// machine) fails its Evals: reported, not hidden.
			b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/op")
		})
	}
}
