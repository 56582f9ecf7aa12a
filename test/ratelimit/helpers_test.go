// Package ratelimit_test proves the rate limit service end to end: several
// replicas in one process against one real redis-server and against a
// 3-master Redis Cluster, Redis killed and restarted under load, and the
// same requests answered side by side by gatehouse and the reference
// envoyproxy/ratelimit.
package ratelimit_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// go-redis' redial of a dead node (a killed cluster master) sleeps
		// out its backoff after its client closed.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}

// replica is one gatehouse rate limit server: its own Redis client, gRPC
// server and metrics, as a separate process would have.
type replica struct {
	srv    *ratelimit.Server
	client rlsv3.RateLimitServiceClient
	reg    *prometheus.Registry
}

func loadConfig(t testing.TB, y string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(y), config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func startReplica(t testing.TB, cfg *config.Config, rdb redis.UniversalClient, prefix string) *replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := ratelimit.New(cfg, component.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: reg, Redis: rdb, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	commit, err := s.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	t.Cleanup(func() { s.Close(context.Background()) })
	cc := testenv.GRPC(t, s.Register)
	return &replica{srv: s, client: rlsv3.NewRateLimitServiceClient(cc), reg: reg}
}

func entries(kv ...string) []*ratelimitv3.RateLimitDescriptor_Entry {
	var out []*ratelimitv3.RateLimitDescriptor_Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func request(domain string, kv ...string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries(kv...)}}}
}

func ask(ctx context.Context, c rlsv3.RateLimitServiceClient, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.ShouldRateLimit(ctx, req)
}

// metric sums the samples of a counter family whose labels include want.
func metric(t testing.TB, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
