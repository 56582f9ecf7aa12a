package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/grpcserver"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkServePeer is the side-by-side load scenario
// (scripts/bench/ratelimit.sh, ../shared/bench/rls-peer.sh) in process:
// the component behind the production gRPC server (grpcserver.New with the
// default server settings), 4 client connections, 64 requests in flight,
// 10,000 subjects, one descriptor (tier, subject) a request, the
// reference-format config of testdata/peer-envoy.yaml. allocs/op counts
// client and server; the client's share does not change between server
// versions, so a change of allocs/op is the server's.
func BenchmarkServePeer(b *testing.B) {
	file, err := filepath.Abs("testdata/peer-envoy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	rdb := benchRedis(b)
	for _, store := range []string{"memory", "redis"} {
		for _, mix := range []struct{ name, tier string }{{"ok", "free"}, {"over", "tight"}} {
			b.Run(store+"/"+mix.name, func(b *testing.B) {
				y := "apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: [" + file + "]\n"
				var c redis.UniversalClient
				if store == "redis" {
					c = rdb
				}
				clients := servePeer(b, load(b, y), c)
				reqs := make([]*rlsv3.RateLimitRequest, 10000)
				for i := range reqs {
					reqs[i] = &rlsv3.RateLimitRequest{Domain: "gatehouse_subject", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
						Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "tier", Value: mix.tier}, {Key: "subject", Value: fmt.Sprintf("user-%d", i)}},
					}}}
				}
				var next atomic.Int64
				b.SetParallelism(32) // 64 goroutines on 2 CPUs
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c := clients[next.Add(1)%int64(len(clients))]
					r := rand.New(rand.NewPCG(rand.Uint64(), 3))
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

// servePeer serves the component as gatehouse serve does (grpcserver.New
// with the config's server settings) and returns clients on 4 connections.
func servePeer(b testing.TB, cfg *config.Config, rdb redis.UniversalClient) []rlsv3.RateLimitServiceClient {
	reg := prometheus.NewRegistry()
	s, err := New(cfg, component.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: reg, Redis: rdb, KeyPrefix: testenv.KeyPrefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	commit, err := s.Prepare(cfg)
	if err != nil {
		b.Fatal(err)
	}
	commit()
	b.Cleanup(func() { s.Close(context.Background()) })
	m, err := grpcserver.NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	lis, err := grpcserver.Listen("ratelimit", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpcserver.New(config.ComponentRateLimit, lis, grpcserver.Options{
		GRPC: cfg.Server.GRPC, RecvLimit: cfg.ReceiveLimit(config.ComponentRateLimit), Metrics: m, Logger: slog.New(slog.DiscardHandler),
	})
	s.Register(srv.Registrar())
	go func() { _ = srv.Serve() }()
	b.Cleanup(func() { srv.GRPC.Stop() })
	clients := make([]rlsv3.RateLimitServiceClient, 4)
	for i := range clients {
		clients[i] = rlsv3.NewRateLimitServiceClient(testenv.Dial(b, srv.Addr()))
	}
	return clients
}

// benchRedis is the make-test redis-server when there is one, else a
// private one (make bench starts none).
func benchRedis(b testing.TB) redis.UniversalClient {
	if os.Getenv(testenv.EnvRedis) != "" {
		return testenv.Redis(b)
	}
	srv := testenv.StartRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { c.Close() })
	return c
}
