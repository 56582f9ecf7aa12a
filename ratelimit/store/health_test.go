package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestBreakerRefusalsAreNotRoundTrips: calls a half-open breaker refuses
// (its one probe out) are counted as breaker_open, not as failed round
// trips; only what was sent is a round trip.
func TestBreakerRefusalsAreNotRoundTrips(t *testing.T) {
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer client.Close()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	rs := NewRedis(client, RedisOptions{Timeout: 300 * time.Millisecond, BatchSize: 1, Pipelines: 4, Metrics: m,
		ProbeEvery: time.Hour, // no background probe may take the half-open slot
		Breaker:    BreakerOptions{Failures: 1, OpenFor: 300 * time.Millisecond, Probes: 1}})
	defer rs.Close()
	sc := newScenario(21, testenv.KeyPrefix(t))
	ctx := context.Background()
	if err := rs.Eval(ctx, []*Op{sc.op()}); err != nil {
		t.Fatalf("Eval with redis up: %v", err)
	}
	// Redis stalls: the first round trip times out and opens the
	// breaker; once it may be probed, four calls come at once, one probes
	// (and times out), three are refused.
	srv.Freeze()
	if err := rs.Eval(ctx, []*Op{sc.op()}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Eval with redis stalled = %v; want ErrUnavailable", err)
	}
	time.Sleep(350 * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		op := sc.op()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = rs.Eval(ctx, []*Op{op})
		}()
	}
	wg.Wait()
	srv.Thaw()
	rt := func(r string) float64 { return testutil.ToFloat64(m.roundTrips.WithLabelValues(r)) }
	er := func(r string) float64 { return testutil.ToFloat64(m.errors.WithLabelValues(r)) }
	if rt("error") != 2 || er("timeout") != 2 || er("breaker_open") != 3 || rt("ok") != 1 {
		t.Errorf("round trips ok %v, error %v; errors timeout %v, breaker_open %v; want 1, 2 (the stalled one and the probe); 2, 3 (the refused calls, never sent)",
			rt("ok"), rt("error"), er("timeout"), er("breaker_open"))
	}
}

// TestReadyFollowsWrites: readiness answers from recent round trips,
// without one of its own: it fails while Redis answers PING but refuses
// every write (NOREPLICAS), found by the prober with no request at all,
// and recovers the same way; while Redis stalls it still answers at once.
func TestReadyFollowsWrites(t *testing.T) {
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer client.Close()
	rs := NewRedis(client, RedisOptions{Timeout: 200 * time.Millisecond, BatchSize: 4, Pipelines: 1,
		ProbeEvery: 50 * time.Millisecond, KeyPrefix: testenv.KeyPrefix(t)})
	defer rs.Close()
	waitReady := func(what string, want func(error) bool) error {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := rs.Ready()
			if want(err) {
				return err
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Ready = %v after 10s", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady("redis up", func(err error) bool { return err == nil })

	ctx := context.Background()
	if err := client.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with writes refused: %v; want PONG (what the old check saw)", err)
	}
	err := waitReady("writes refused, no requests", func(err error) bool { return err != nil })
	if !strings.Contains(err.Error(), "NOREPLICAS") {
		t.Errorf("Ready = %v; want it to name NOREPLICAS", err)
	}
	sc := newScenario(22, testenv.KeyPrefix(t))
	op := sc.op()
	op.Hits, op.Refund, op.CountRefused = 1, false, false
	if err := rs.Eval(ctx, []*Op{op}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Eval with writes refused = %v; want ErrUnavailable", err)
	}
	if err := client.ConfigSet(ctx, "min-replicas-to-write", "0").Err(); err != nil {
		t.Fatal(err)
	}
	waitReady("writes accepted again, no requests", func(err error) bool { return err == nil })

	// Redis stalls: Ready answers from what it knows, at once (a round
	// trip of its own would wait out the stall or a timeout).
	srv.Freeze()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	for i := 0; i < 100; i++ {
		_ = rs.Ready()
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("100 Ready calls with redis stalled took %s; want them answered without a round trip", d)
	}
	waitReady("redis stalled", func(err error) bool { return err != nil })
	srv.Thaw()
	waitReady("redis back", func(err error) bool { return err == nil })
}
