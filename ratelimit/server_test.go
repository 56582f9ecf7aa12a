package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// serve starts the component on a loopback gRPC server and returns a
// client; everything stops at the end of the test.
func serve(t testing.TB, cfg *config.Config, rdb redis.UniversalClient, prefix string) (*Server, rlsv3.RateLimitServiceClient) {
	t.Helper()
	s, err := New(cfg, component.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(), Redis: rdb, KeyPrefix: prefix})
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
	return s, rlsv3.NewRateLimitServiceClient(cc)
}

func load(t testing.TB, y string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(y), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const serverYAML = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold: [{requests: 3, per: hour}]
routes:
  - id: orders
    match: {prefix: /}
`

func askOrders(t *testing.T, c rlsv3.RateLimitServiceClient, subject string) rlsv3.RateLimitResponse_Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
		{Key: "route", Value: "orders"}, {Key: "tier", Value: "gold"}, {Key: "subject", Value: subject}}}}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if err := resp.ValidateAll(); err != nil {
		t.Fatalf("response fails Envoy's validation: %v", err)
	}
	return resp.GetOverallCode()
}

func TestServeMemoryAndReload(t *testing.T) {
	cfg := load(t, serverYAML)
	s, c := serve(t, cfg, nil, "gh:")
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, askOrders(t, c, "alice").String())
	}
	if strings.Join(got, " ") != "OK OK OK OVER_LIMIT" {
		t.Fatalf("codes = %v", got)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready with the in-process store = %v", err)
	}
	// A reload raising the limit keeps the counters and clears the cache.
	commit, err := s.Prepare(load(t, strings.Replace(serverYAML, "requests: 3", "requests: 5", 1)))
	if err != nil {
		t.Fatal(err)
	}
	commit()
	if code := askOrders(t, c, "alice"); code != rlsv3.RateLimitResponse_OK {
		t.Errorf("after raising the limit to 5: %v; want OK (4th of 5)", code)
	}
	// An invalid config is refused by Prepare and changes nothing.
	if _, err := s.Prepare(load(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: [/nonexistent/rl.yaml]}\n")); err == nil {
		t.Errorf("Prepare accepted a config naming a missing file")
	}
	if code := askOrders(t, c, "alice"); code != rlsv3.RateLimitResponse_OK {
		t.Errorf("after a rejected reload: %v; want OK (5th of 5)", code)
	}
}

func TestServeRedis(t *testing.T) {
	rdb := testenv.Redis(t)
	prefix := testenv.KeyPrefix(t)
	// The default store timeout (100ms) answers by the failure mode when
	// the first round trip (dial, script load) is slow on a loaded
	// machine; this test is about the counts, not the timeout.
	cfg := load(t, strings.Replace(serverYAML, "ratelimit:\n", "ratelimit:\n  store: {timeout: 5s}\n", 1))
	s, c := serve(t, cfg, rdb, prefix)
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, askOrders(t, c, "bob").String())
	}
	if strings.Join(got, " ") != "OK OK OK OVER_LIMIT" {
		t.Fatalf("codes = %v", got)
	}
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready = %v", err)
	}
	keys, err := rdb.Keys(context.Background(), prefix+"rl:*").Result()
	if err != nil || len(keys) != 1 || !strings.HasPrefix(keys[0], prefix+"rl:{gatehouse|orders|gold|subject=bob}:f1h:") {
		t.Errorf("redis keys = %v, %v; want one hour counter of bob", keys, err)
	}
}

// TestRedisUnreachableAtStart: gatehouse starts, reports not ready, answers
// by the failure mode, and recovers when Redis comes up.
func TestRedisUnreachableAtStart(t *testing.T) {
	srv := testenv.StartRedis(t)
	srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	cfg := load(t, serverYAML+"    ratelimit: {failureMode: open}\n  - id: closed\n    match: {prefix: /c}\n")
	s, c := serve(t, cfg, rdb, "gh:")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Ready(ctx); err == nil {
		t.Errorf("Ready with redis down = nil; want an error")
	}
	if code := askOrders(t, c, "carol"); code != rlsv3.RateLimitResponse_OK {
		t.Errorf("fail-open route with redis down = %v; want OK", code)
	}
	srv.Start()
	deadline := time.Now().Add(15 * time.Second)
	for s.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("not ready after redis started")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEnvoyConfigHotReload: a changed envoy config file applies without a
// gatehouse reload; a broken one is refused and the last good one serves.
func TestEnvoyConfigHotReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rl.yaml")
	write := func(rpu int) {
		y := "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: " + string(rune('0'+rpu)) + "}\n"
		if err := os.WriteFile(file+".tmp", []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	cfg := load(t, "apiVersion: gatehouse/v1\nserver: {reloadDebounce: 20ms}\nratelimit: {envoyConfigs: ["+dir+"], localCache: {maxEntries: 0}}\n")
	s, c := serve(t, cfg, nil, "gh:")
	ask := func() rlsv3.RateLimitResponse_Code {
		resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
			HitsAddend: 0})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOverallCode()
	}
	ask()
	if ask() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatal("second request of 1/hour not refused")
	}
	write(5)
	waitFor(t, func() bool { return s.lim.Snapshot().Rules[0].Limits[0].Spec.Limit == 5 })
	os.WriteFile(file, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight}\n"), 0o644)
	waitFor(t, func() bool { return testutil.ToFloat64(s.rt.envoyRe.WithLabelValues("rejected")) >= 1 })
	if got := s.lim.Snapshot().Rules[0].Limits[0].Spec.Limit; got != 5 {
		t.Errorf("a broken envoy config replaced the good one (limit %d)", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(load(t, serverYAML)); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	err := Validate(load(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: [/nonexistent/x.yaml]}\n"))
	if err == nil || !strings.Contains(err.Error(), "ratelimit.envoyConfigs[0]") {
		t.Errorf("Validate(missing file) = %v", err)
	}
}

// TestCheckDomains: a domain Envoy is rendered to send descriptors in
// that the config does not declare is an error naming the routes (its
// descriptors would be answered OK, limited by nothing).
func TestCheckDomains(t *testing.T) {
	cfg := load(t, "apiVersion: gatehouse/v1\nratelimit: {default: [{requests: 1, per: second}]}\nroutes: [{id: r, match: {prefix: /}}]\n")
	if err := CheckDomains(cfg, map[string][]string{"gatehouse": {"r"}}); err != nil {
		t.Errorf("CheckDomains(gatehouse) = %v; want nil", err)
	}
	err := CheckDomains(cfg, map[string][]string{"gatehouse": {"r"}, "typo": {"a", "b"}})
	if err == nil || !strings.Contains(err.Error(), `routes a, b send rate limit descriptors in domain "typo"`) || !strings.Contains(err.Error(), "declares gatehouse") {
		t.Errorf("CheckDomains(typo) = %v; want the routes and the domain named", err)
	}
}

// TestRuntimeRootSymlinkSwap: with reference.runtime.watchRoot (the
// reference's RUNTIME_WATCH_ROOT, its default) the runtime root may be a
// symlink swapped to a new directory; the new directory's config applies,
// and so do later changes inside it.
func TestRuntimeRootSymlinkSwap(t *testing.T) {
	base := t.TempDir()
	version := func(name string, rpu int) {
		dir := filepath.Join(base, name, "rl", "config")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		y := fmt.Sprintf("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: %d}\n", rpu)
		if err := os.WriteFile(filepath.Join(dir, "d.yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	point := func(name string) {
		tmp := filepath.Join(base, "current.tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(base, "current")); err != nil {
			t.Fatal(err)
		}
	}
	version("v1", 1)
	point("v1")
	cfg := load(t, "apiVersion: gatehouse/v1\nserver: {reloadDebounce: 20ms}\nratelimit:\n  reference:\n    runtime: {root: "+filepath.Join(base, "current")+", subdirectory: rl}\n")
	s, _ := serve(t, cfg, nil, "gh:")
	limit := func() uint64 { return s.lim.Snapshot().Rules[0].Limits[0].Spec.Limit }
	if limit() != 1 {
		t.Fatalf("limit %d; want 1", limit())
	}
	version("v2", 2)
	point("v2")
	waitFor(t, func() bool { return limit() == 2 })
	// A change inside the directory the root now points to applies too.
	version("v2", 3)
	waitFor(t, func() bool { return limit() == 3 })
}
