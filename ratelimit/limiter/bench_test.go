package limiter

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

const benchNative = `
  tiers:
    free: [{requests: 100000, per: second}, {requests: 1000000000, per: day}]
    tight: [{requests: 1, per: hour}, {requests: 1000000000, per: day}]
routes:
  - id: orders
    match: {prefix: /}
`

func benchLimiter(b *testing.B, st store.Store, cacheEntries int) *Limiter {
	// The load scenario's envoyproxy/ratelimit config (scripts/bench/ratelimit.sh).
	file, err := filepath.Abs("../testdata/bench-envoy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.LoadBytes("<bench>", []byte(fmt.Sprintf("apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: [%s]\n  localCache: {maxEntries: %d}\n%s", file, cacheEntries, benchNative)), config.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	l := New(slog.New(slog.DiscardHandler), m, store.NewOverLimitCache(cacheEntries), "bench:"+fmt.Sprint(time.Now().UnixNano())+":")
	l.Swap(snap, st, SettingsFrom(cfg.RateLimit))
	return l
}

// benchRequests pre-builds requests of 10,000 subjects, as the load
// generator: 2 descriptors (tier + subject, daily + subject) in the
// envoyproxy/ratelimit domain; one route + tier + subject descriptor, whose
// tier holds the same two limits, in gatehouse's own.
func benchRequests(domain, tierKey, tier string) []*rlsv3.RateLimitRequest {
	reqs := make([]*rlsv3.RateLimitRequest, 10000)
	for i := range reqs {
		subject := &ratelimitv3.RateLimitDescriptor_Entry{Key: "subject", Value: fmt.Sprintf("user-%d", i)}
		es := []*ratelimitv3.RateLimitDescriptor_Entry{{Key: tierKey, Value: tier}, subject}
		ds := []*ratelimitv3.RateLimitDescriptor{{Entries: es}}
		if domain == "gatehouse" {
			ds[0].Entries = append([]*ratelimitv3.RateLimitDescriptor_Entry{{Key: "route", Value: "orders"}}, es...)
		} else {
			ds = append(ds, &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "daily", Value: tier}, subject}})
		}
		reqs[i] = &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
	}
	return reqs
}

func runBench(b *testing.B, l *Limiter, reqs []*rlsv3.RateLimitRequest) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		ctx := context.Background()
		for pb.Next() {
			if _, err := l.ShouldRateLimit(ctx, reqs[r.IntN(len(reqs))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchRedis is the make-test redis-server when there is one, else a
// private one (make bench starts none).
func benchRedis(b *testing.B) *redis.Client {
	if os.Getenv(testenv.EnvRedis) != "" {
		return testenv.Redis(b)
	}
	srv := testenv.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkShouldRateLimit measures one decision without gRPC: the
// in-process store, and a real redis-server (batched round trips).
func BenchmarkShouldRateLimit(b *testing.B) {
	cases := []struct{ name, domain, tierKey, tier string }{
		{"envoy-ok", "bench", "tier", "free"},
		{"envoy-over", "bench", "tier", "tight"},
		{"native-ok", "gatehouse", "tier", "free"},
		{"native-over", "gatehouse", "tier", "tight"},
	}
	for _, c := range cases {
		b.Run("memory/"+c.name, func(b *testing.B) {
			runBench(b, benchLimiter(b, store.NewMemory(0), 100000), benchRequests(c.domain, c.tierKey, c.tier))
		})
	}
	rdb := benchRedis(b)
	for _, c := range cases {
		b.Run("redis/"+c.name, func(b *testing.B) {
			rs := store.NewRedis(rdb, store.RedisOptions{Timeout: time.Second, BatchSize: 128, Pipelines: 4})
			defer rs.Close()
			b.SetParallelism(32) // 64 goroutines on 2 CPUs, as the load scenario's concurrency
			runBench(b, benchLimiter(b, rs, 100000), benchRequests(c.domain, c.tierKey, c.tier))
		})
	}
}
