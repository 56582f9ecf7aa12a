package store

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkClusterEval: Evals of one and of two descriptors (on different
// masters, most of the time) from 32 goroutines on the shared test Redis
// Cluster.
//
//	go test -run '^$' -bench BenchmarkClusterEval ./ratelimit/store
func BenchmarkClusterEval(b *testing.B) {
	cc := testenv.RedisCluster(b)
	prefix := testenv.KeyPrefix(b)
	for _, n := range []int{1, 2} {
		b.Run(strconv.Itoa(n)+"-ops", func(b *testing.B) {
			rs := NewRedis(cc, RedisOptions{Timeout: time.Second, BatchSize: 128, Pipelines: 2})
			defer rs.Close()
			var failed, seq atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := seq.Add(1) * 7919
				for pb.Next() {
					i++
					ops := make([]*Op, n)
					for j := range ops {
						ops[j] = countOp(prefix + "{b" + strconv.FormatInt((i+int64(j)*31)%512, 10) + "}")
					}
					if err := rs.Eval(context.Background(), ops); err != nil {
						failed.Add(1)
					}
				}
			})
			b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/op")
		})
	}
}
