package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkServeGRPC drives the component through real gRPC on loopback,
// 64 requests in flight, 10,000 subjects, 2 descriptors a request:
// the load scenario of scripts/bench/ratelimit.sh, in process (client and
// server CPU both count here).
func BenchmarkServeGRPC(b *testing.B) {
	file, err := filepath.Abs("testdata/bench-envoy.yaml") // the load scenario's config
	if err != nil {
		b.Fatal(err)
	}
	var rdb redis.UniversalClient
	if os.Getenv(testenv.EnvRedis) != "" {
		rdb = testenv.Redis(b)
	} else {
		srv := testenv.StartRedis(b) // make bench starts no redis
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b.Cleanup(func() { c.Close() })
		rdb = c
	}
	stores := map[string]redis.UniversalClient{"memory": nil, "redis": rdb}
	for name, rdb := range stores {
		for _, tier := range []string{"free", "tight"} {
			b.Run(name+"/"+tier, func(b *testing.B) {
				cfg := load(b, "apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: ["+file+"]\n")
				_, c := serve(b, cfg, rdb, testenv.KeyPrefix(b))
				reqs := make([]*rlsv3.RateLimitRequest, 10000)
				for i := range reqs {
					subject := &ratelimitv3.RateLimitDescriptor_Entry{Key: "subject", Value: fmt.Sprintf("user-%d", i)}
					reqs[i] = &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*ratelimitv3.RateLimitDescriptor{
						{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "tier", Value: tier}, subject}},
						{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "daily", Value: tier}, subject}},
					}}
				}
				b.SetParallelism(32)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					r := rand.New(rand.NewPCG(rand.Uint64(), 2))
					for pb.Next() {
						if _, err := c.ShouldRateLimit(context.Background(), reqs[r.IntN(len(reqs))]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
