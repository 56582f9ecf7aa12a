package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const downConfig = `apiVersion: gatehouse/v1
ratelimit:
  store:
    timeout: 150ms
    breaker: {failures: 3, openFor: 200ms}
routes:
  - id: closed
    match: {prefix: /c}
    ratelimit: {default: [{requests: 100000, per: second}], failureMode: closed}
  - id: open
    match: {prefix: /o}
    ratelimit: {default: [{requests: 100000, per: second}], failureMode: open}
`

// phase counts the answers of one phase of the test, per route.
type phase struct {
	ok, over, errs [2]atomic.Int64
	inflight       atomic.Int64
}

// TestRedisKilledUnderLoad kills the replicas' redis-server while three of
// them serve load, then starts it again: no request fails, fail-closed
// routes refuse and fail-open routes admit while it is down, the circuit
// breaker opens, and every replica recovers without a restart.
func TestRedisKilledUnderLoad(t *testing.T) {
	srv := testenv.StartRedis(t)
	cfg := loadConfig(t, downConfig)
	var reps []*replica
	for i := 0; i < 3; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond,
			ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		reps = append(reps, startReplica(t, cfg, rdb, "gh:"))
	}
	var cur atomic.Pointer[phase]
	up, down, restarting, back := &phase{}, &phase{}, &phase{}, &phase{}
	cur.Store(up)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range reps {
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					route := []string{"closed", "open"}[i%2]
					// A request belongs to the phase it started in: one sent
					// before the kill may be answered after it.
					p := cur.Load()
					p.inflight.Add(1)
					resp, err := ask(context.Background(), r.client, request("gatehouse", "route", route, "tier", "gold", "subject", "u"))
					p.inflight.Add(-1)
					switch {
					case err != nil:
						p.errs[i%2].Add(1)
						t.Errorf("ShouldRateLimit on %s: %v (a dead Redis must be an answer, not an error)", route, err)
					case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
						p.ok[i%2].Add(1)
					default:
						p.over[i%2].Add(1)
					}
				}
			}()
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	waitUntil(t, "answers with redis up", func() bool { return up.ok[0].Load() > 20 && up.ok[1].Load() > 20 })
	srv.Stop()
	// Requests already on their way may still be answered from before the
	// kill; count from the first degraded answer on.
	waitUntil(t, "a degraded answer", func() bool { return up.over[0].Load() > 0 })
	cur.Store(down)
	waitUntil(t, "answers with redis down", func() bool { return down.over[0].Load() > 20 && down.ok[1].Load() > 20 })
	// Every replica must have met the dead Redis: degraded answers both
	// ways, and its breaker open and answering without trying.
	waitUntil(t, "every replica to degrade and open its breaker", func() bool {
		for _, r := range reps {
			if metric(t, r.reg, "gatehouse_ratelimit_decisions_total", map[string]string{"decision": "degraded_closed"}) == 0 ||
				metric(t, r.reg, "gatehouse_ratelimit_decisions_total", map[string]string{"decision": "degraded_open"}) == 0 ||
				metric(t, r.reg, "gatehouse_ratelimit_store_errors_total", map[string]string{"reason": "breaker_open"}) == 0 {
				return false
			}
		}
		return true
	})
	// Requests started while Redis was down must be answered before it
	// comes back, or one could meet the new server.
	cur.Store(restarting)
	waitUntil(t, "the requests of the down phase to finish", func() bool { return down.inflight.Load() == 0 })
	srv.Start()
	cur.Store(back)
	waitUntil(t, "recovery", func() bool { return back.ok[0].Load() > 20 })
	close(stop)
	wg.Wait()

	if n := down.ok[0].Load(); n > 0 {
		t.Errorf("fail-closed route admitted %d requests with redis down", n)
	}
	if n := down.over[1].Load(); n > 0 {
		t.Errorf("fail-open route refused %d requests with redis down", n)
	}
	for i, r := range reps {
		if n := metric(t, r.reg, "gatehouse_ratelimit_decisions_total", map[string]string{"decision": "degraded_closed"}); n == 0 {
			t.Errorf("replica %d counted no degraded_closed answer", i)
		}
		if n := metric(t, r.reg, "gatehouse_ratelimit_decisions_total", map[string]string{"decision": "degraded_open"}); n == 0 {
			t.Errorf("replica %d counted no degraded_open answer", i)
		}
		if n := metric(t, r.reg, "gatehouse_ratelimit_store_breaker_transitions_total", map[string]string{"to": "open"}); n == 0 {
			t.Errorf("replica %d: the circuit breaker never opened", i)
		}
		if n := metric(t, r.reg, "gatehouse_ratelimit_store_errors_total", map[string]string{"reason": "breaker_open"}); n == 0 {
			t.Errorf("replica %d: no request was answered by the open breaker without trying Redis", i)
		}
		// Readiness follows the store's recent round trips: a replica whose
		// last ones failed (or whose breaker is open) is ready again once
		// its requests or its prober succeed, without a restart.
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := r.srv.Ready(ctx)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("replica %d not ready 10s after redis came back: %v", i, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("up: ok %d/%d; down: closed over %d, open ok %d; back: ok %d/%d",
		up.ok[0].Load(), up.ok[1].Load(), down.over[0].Load(), down.ok[1].Load(), back.ok[0].Load(), back.ok[1].Load())
}

// waitUntil polls cond for up to 30s (a bound on the test, not a timing
// assertion: slow machines only wait longer).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
