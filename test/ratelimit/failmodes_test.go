package ratelimit_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// failModesConfig: gatehouse's tiers on "api" with the default failure
// modes, on "strict" closed and on "lenient" open for every tier, and the
// envoy config domain mongo_cps; REFERENCE is replaced.
const failModesConfig = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold: [{requests: 100000, per: second}]
    anonymous: [{requests: 100000, per: second}]
  envoyConfigs: [ENVOY]
  store: {timeout: 150ms, breaker: {failures: 3, openFor: 200ms}}
  REFERENCE
routes:
  - {id: api, match: {prefix: /}}
  - {id: strict, match: {prefix: /s}, ratelimit: {failureMode: closed}}
  - {id: lenient, match: {prefix: /l}, ratelimit: {failureMode: open}}
`

// answer is how a request was answered: ok (with or without the degraded
// mark for the upstream), over, or an error with its gRPC code.
type answer string

const (
	answerOK       answer = "OK"
	answerDegraded answer = "OK, degraded-open"
	answerOver     answer = "OVER_LIMIT"
	answerError    answer = "Unavailable"
)

func answerOf(t *testing.T, resp *rlsv3.RateLimitResponse, err error) answer {
	t.Helper()
	switch {
	case err != nil:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("ShouldRateLimit error %v; want Unavailable or an answer", err)
		}
		return answerError
	case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
		return answerOver
	}
	for _, h := range resp.GetRequestHeadersToAdd() {
		if h.GetKey() == "x-gatehouse-ratelimit" && h.GetValue() == "degraded-open" {
			return answerDegraded
		}
	}
	return answerOK
}

// TestFailureModesRedisKilled kills, then pauses, the real redis-server
// of two replicas — one in gatehouse's own mode, one in reference mode —
// and shows each tier's answers: verified tiers admitted with the
// degraded-open mark and anonymous callers refused by default, a route's
// one mode for every tier, the envoy config domain by failureMode.default
// in gatehouse's mode and with an Unavailable error in reference mode (as
// the reference answers; Envoy's failure_mode_deny then decides), where
// gatehouse's own domain keeps its failure modes. Both recover without a
// restart.
func TestFailureModesRedisKilled(t *testing.T) {
	srv := testenv.StartRedis(t)
	envoyFile, err := filepath.Abs("testdata/envoy/mongo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mk := func(reference string) *replica {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond,
			ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
		t.Cleanup(func() { rdb.Close() })
		y := strings.NewReplacer("ENVOY", envoyFile, "REFERENCE", reference).Replace(failModesConfig)
		return startReplica(t, loadConfig(t, y), rdb, "gh:")
	}
	modes := map[string]*replica{"gatehouse": mk(""), "reference": mk("reference: {}")}
	type tc struct {
		name string
		req  *rlsv3.RateLimitRequest
		// down is the answer with Redis down, in gatehouse's mode and in
		// reference mode.
		down map[string]answer
	}
	both := func(a answer) map[string]answer { return map[string]answer{"gatehouse": a, "reference": a} }
	cases := []tc{
		{"verified tier", request("gatehouse", "route", "api", "tier", "gold", "subject", "u"), both(answerDegraded)},
		{"anonymous tier", request("gatehouse", "route", "api", "tier", "anonymous", "subject", "10.0.0.1"), both(answerOver)},
		{"verified tier, route closed", request("gatehouse", "route", "strict", "tier", "gold", "subject", "u"), both(answerOver)},
		{"anonymous tier, route open", request("gatehouse", "route", "lenient", "tier", "anonymous", "subject", "10.0.0.1"), both(answerDegraded)},
		{"envoy config domain", request("mongo_cps", "database", "users"), map[string]answer{"gatehouse": answerDegraded, "reference": answerError}},
	}
	check := func(phase string, want func(c tc, mode string) answer) {
		t.Helper()
		for _, c := range cases {
			for mode, r := range modes {
				resp, err := ask(context.Background(), r.client, c.req)
				if got := answerOf(t, resp, err); got != want(c, mode) {
					t.Errorf("%s, %s mode, %s: %s; want %s", phase, mode, c.name, got, want(c, mode))
				}
			}
		}
	}
	up := func(tc, string) answer { return answerOK }
	down := func(c tc, mode string) answer { return c.down[mode] }
	check("Redis up", up)

	srv.Stop()
	check("Redis killed", down)
	for mode, r := range modes {
		for _, l := range []map[string]string{{"tier": "gold", "mode": "open"}, {"tier": "anonymous", "mode": "closed"}} {
			if n := metric(t, r.reg, "gatehouse_ratelimit_degraded_total", l); n < 1 {
				t.Errorf("%s mode: gatehouse_ratelimit_degraded_total%v = %v; want the answers counted", mode, l, n)
			}
		}
	}
	if n := metric(t, modes["reference"].reg, "gatehouse_ratelimit_degraded_total", map[string]string{"domain": "mongo_cps", "mode": "error"}); n < 1 {
		t.Errorf("reference mode: degraded{domain=mongo_cps, mode=error} = %v; want the errors counted", n)
	}
	if n := metric(t, modes["reference"].reg, "ratelimit_service_should_rate_limit_error", map[string]string{"err_type": "redis_error"}); n < 1 {
		t.Errorf("reference mode: the reference's should_rate_limit_error{redis_error} = %v; want it counted", n)
	}
	srv.Start()
	// recovered: the anonymous tier, refused while Redis cannot decide,
	// is admitted again by both replicas.
	recovered := func() bool {
		for _, r := range modes {
			resp, err := ask(context.Background(), r.client, cases[1].req)
			if answerOf(t, resp, err) != answerOK {
				return false
			}
		}
		return true
	}
	waitUntil(t, "recovery after Redis restarted", recovered)
	check("Redis restarted", up)

	// Slow rather than down: CLIENT PAUSE WRITE holds every script, so
	// each round trip runs into store.timeout (until the breaker opens).
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	defer rdb.Do(ctx, "CLIENT", "UNPAUSE")
	check("Redis paused", down)
	for mode, r := range modes {
		if n := metric(t, r.reg, "gatehouse_ratelimit_store_errors_total", map[string]string{"reason": "timeout"}); n < 1 {
			t.Errorf("%s mode: store_errors_total{reason=timeout} = %v; want the paused round trips counted as timeouts", mode, n)
		}
	}
	if err := rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "recovery after Redis answered again", recovered)
	check("Redis answering again", up)
}

// TestRedisDownAlikeWithReference: the reference binary and `gatehouse
// ratelimit-compat`, started from the same environment, each on its own
// redis-server, both answer a Redis failure with a gRPC error (the
// reference's is Unknown, the text of its Redis error; gatehouse's
// Unavailable: the documented difference store-error) and count it in
// should_rate_limit_error{redis_error}; a request that needs no Redis is
// still answered; both recover once Redis is back, without a restart.
func TestRedisDownAlikeWithReference(t *testing.T) {
	refBin, ghBin := binaries(t)
	root := t.TempDir()
	testenv.ConfigMap(t, filepath.Join(root, "ratelimit", "config"))(map[string]string{"mongo.yaml": readFile(t, "testdata/envoy/mongo.yaml")})
	refRedis, ghRedis := testenv.StartRedis(t), testenv.StartRedis(t)
	extra := map[string]string{"DISABLE_STATS": "false", "USE_PROMETHEUS": "true", "STATS_FLUSH_INTERVAL": "200ms", "REDIS_TIMEOUT": "1s"}
	refE, ghE := refEnv(t, refRedis.Addr(), root, "ratelimit"), refEnv(t, ghRedis.Addr(), root, "ratelimit")
	for k, v := range extra {
		refE[k], ghE[k] = v, v
	}
	refE["PROMETHEUS_ADDR"], ghE["PROMETHEUS_ADDR"] = testenv.FreeAddr(t), testenv.FreeAddr(t)
	svcs := []*service{startService(t, "reference", refBin, nil, refE), startService(t, "gatehouse", ghBin, []string{"ratelimit-compat"}, ghE)}
	promOf := map[string]string{"reference": refE["PROMETHEUS_ADDR"], "gatehouse": ghE["PROMETHEUS_ADDR"]}
	limited, unlimited := request("mongo_cps", "database", "users"), request("mongo_cps", "database", "other")
	for _, s := range svcs {
		if resp, err := ask(context.Background(), s.client, limited); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%s with Redis up: %v, %v; want OK", s.name, resp, err)
		}
	}

	refRedis.Stop()
	ghRedis.Stop()
	wantCode := map[string]codes.Code{"reference": codes.Unknown, "gatehouse": codes.Unavailable}
	for _, s := range svcs {
		_, err := ask(context.Background(), s.client, limited)
		if status.Code(err) != wantCode[s.name] {
			t.Errorf("%s with Redis down: %v; want a gRPC error with code %v", s.name, err, wantCode[s.name])
		}
		t.Logf("%s with Redis down: %v", s.name, err)
		if resp, err := ask(context.Background(), s.client, unlimited); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("%s with Redis down, a descriptor no rule limits: %v, %v; want OK", s.name, resp, err)
		}
	}
	for _, s := range svcs {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, body := get(t, promOf[s.name], "/metrics")
			if redisErrors(body) >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: should_rate_limit_error{err_type=\"redis_error\"} not counted:\n%s", s.name, body)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	refRedis.Start()
	ghRedis.Start()
	for _, s := range svcs {
		waitUntil(t, s.name+" recovering once Redis is back", func() bool {
			resp, err := ask(context.Background(), s.client, limited)
			return err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_OK
		})
	}
}

// redisErrors reads ratelimit_service_should_rate_limit_error{err_type=
// "redis_error"} from a Prometheus page, 0 when absent.
func redisErrors(page string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "ratelimit_service_should_rate_limit_error{") && strings.Contains(line, `err_type="redis_error"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				return v
			}
		}
	}
	return 0
}
