package envoy_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/test/harness"
)

func failureMesh(t *testing.T, authzMode string) *harness.Mesh {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "failure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return harness.Start(t, harness.Options{
		Config:     strings.Replace(string(b), "AUTHZ_MODE", authzMode, 1),
		Replicas:   2,
		Components: []string{"xds,ratelimit", "authz"},
		Redis:      true,
		Upstreams:  []string{"echo"},
	})
}

// status sends GET path (with a demo token when tok is set) and returns the
// answer's status.
func status(t *testing.T, m *harness.Mesh, path, tok string, extra ...string) (int, harness.Echo) {
	t.Helper()
	h := extra
	if tok != "" {
		h = append(h, "authorization: Bearer "+tok)
	}
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + path, Headers: h})
	e, _ := r.Echo()
	return r.Status, e
}

// eventually retries check for up to 10 s (a dead service is noticed by
// Envoy at the next request's connect, or after its connections drop).
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFailureAuthzDown: with gatehouse's ext_authz stopped, Envoy refuses
// the routes that need it (fail closed, the default), lets through as
// anonymous the one whose authz.failureMode is open, and still serves the
// public ones; the routes answer again once ext_authz is back.
func TestFailureAuthzDown(t *testing.T) {
	m := failureMesh(t, "closed")
	tok := harness.DemoToken(t, "ada", "pro", "", nil)
	if s, _ := status(t, m, "/api/x", tok); s != http.StatusOK {
		t.Fatalf("before: /api/x = %d; want 200", s)
	}
	// The route that fails open is checked by its own ext_authz filter
	// while ext_authz is up: its tier reaches the rate limit from that
	// filter's metadata (pro: 2 a minute, not the anonymous 1000).
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusTooManyRequests} {
		if s, e := status(t, m, "/lenient/x", tok); s != want || (s == http.StatusOK && e.Header("x-gatehouse-tier") != "pro") {
			t.Fatalf("ext_authz up: /lenient request %d = %d (tier %q); want %d as tier pro", i+1, s, e.Header("x-gatehouse-tier"), want)
		}
	}
	m.Gatehouse[1].Kill()
	eventually(t, "a refusal with ext_authz down", func() bool { s, _ := status(t, m, "/api/x", tok); return s == http.StatusForbidden })
	if s, _ := status(t, m, "/public/x", ""); s != http.StatusOK {
		t.Errorf("public route with ext_authz down: %d; want 200", s)
	}
	// ... and where the route says open, the request goes through as
	// anonymous: no identity header, the client's own ones removed.
	s, e := status(t, m, "/lenient/x", tok, "x-gatehouse-tier: enterprise", "x-gatehouse-subject: root")
	if s != http.StatusOK {
		t.Errorf("route with authz.failureMode open, ext_authz down: %d; want 200", s)
	}
	for _, h := range []string{"x-gatehouse-tier", "x-gatehouse-subject"} {
		if v, ok := e.Headers[h]; ok {
			t.Errorf("fail-open route: the upstream saw %s %q", h, v)
		}
	}
	if n := m.Envoy.Stat("http.public.ext_authz.error"); n < 1 {
		t.Errorf("Envoy's http.public.ext_authz.error = %d; want the failed checks counted", n)
	}
	m.Gatehouse[1].Start()
	eventually(t, "recovery once ext_authz is back", func() bool { s, _ := status(t, m, "/api/x", tok); return s == http.StatusOK })
}

// TestFailureAuthzDownOpen: with xds.services.authzFailureMode open, a
// request goes through while ext_authz is down — without any identity
// header, including the ones the client sent.
func TestFailureAuthzDownOpen(t *testing.T) {
	m := failureMesh(t, "open")
	m.Gatehouse[1].Kill()
	tok := harness.DemoToken(t, "ada", "pro", "", nil)
	var e harness.Echo
	eventually(t, "a request let through with ext_authz down", func() bool {
		var s int
		s, e = status(t, m, "/api/x", tok, "x-gatehouse-tier: enterprise", "x-gatehouse-subject: root")
		return s == http.StatusOK && m.Envoy.Stat("http.public.ext_authz.failure_mode_allowed") > 0
	})
	for _, h := range []string{"x-gatehouse-tier", "x-gatehouse-subject"} {
		if v, ok := e.Headers[h]; ok {
			t.Errorf("fail-open request reached the upstream with %s %q", h, v)
		}
	}
}

// TestFailureRedisDown: with Redis killed, each tier answers by its
// failure mode. With the defaults an authenticated request passes — and
// the upstream sees x-gatehouse-ratelimit: degraded-open, which no client
// can send itself — while an anonymous one is refused with 429, whatever
// tier header it claims; a route whose failure mode is closed (or open)
// for every tier refuses (or admits) all of them; a route without a rate
// limit never asks. The answers are counted by tier and mode, and
// counting resumes when Redis is back, without a restart.
func TestFailureRedisDown(t *testing.T) {
	m := failureMesh(t, "closed")
	tok := harness.DemoToken(t, "rita", "pro", "", nil)
	for _, p := range []string{"/rl-closed", "/rl-open", "/tiers"} {
		if s, _ := status(t, m, p, tok); s != http.StatusOK {
			t.Fatalf("before: %s = %d; want 200", p, s)
		}
	}
	// Before: a decided answer carries no mark, and a client's own is gone.
	if s, e := status(t, m, "/tiers/x", tok, "x-gatehouse-ratelimit: degraded-open"); s != http.StatusOK || e.Headers["x-gatehouse-ratelimit"] != nil {
		t.Errorf("Redis up, a client sending the mark: %d, upstream saw x-gatehouse-ratelimit %q; want 200 without it", s, e.Headers["x-gatehouse-ratelimit"])
	}
	m.Redis.Stop()
	checkTiers(t, m, tok, "Redis down", http.StatusTooManyRequests)
	if s, _ := status(t, m, "/rl-closed", tok); s != http.StatusTooManyRequests {
		t.Errorf("Redis down, failureMode closed: %d; want 429", s)
	}
	if s, _ := status(t, m, "/rl-open", tok); s != http.StatusOK {
		t.Errorf("Redis down, failureMode open: %d; want 200", s)
	}
	for _, l := range [][]string{{`tier="pro"`, `mode="open"`}, {`tier="anonymous"`, `mode="closed"`}} {
		if n := m.Gatehouse[0].Metric("gatehouse_ratelimit_degraded_total", append(l, `domain="gatehouse"`)...); n < 1 {
			t.Errorf("gatehouse_ratelimit_degraded_total{%s} = %v; want the degraded answers counted", strings.Join(l, ","), n)
		}
	}
	m.Redis.Start()
	eventually(t, "recovery once Redis is back", func() bool { s, _ := status(t, m, "/rl-closed", tok); return s == http.StatusOK })
	if s, e := status(t, m, "/tiers/x", tok); s != http.StatusOK || e.Headers["x-gatehouse-ratelimit"] != nil {
		t.Errorf("Redis back: %d, upstream saw x-gatehouse-ratelimit %q; want 200 without it", s, e.Headers["x-gatehouse-ratelimit"])
	}
}

// checkTiers checks the answers of /tiers (verified tiers open, anonymous
// closed; closed is the status of a refusal) and of a route without a
// rate limit while something of the rate limiting is down. An admitted
// request carries the degraded mark to the upstream only when
// gatehouse itself answered (marked).
func checkTiers(t *testing.T, m *harness.Mesh, tok, what string, closed int, marked ...bool) {
	t.Helper()
	mark := len(marked) == 0 || marked[0]
	s, e := status(t, m, "/tiers/x", tok, "x-gatehouse-ratelimit: made-up")
	if s != http.StatusOK {
		t.Errorf("%s: an authenticated request = %d; want 200", what, s)
	} else if got := e.Headers["x-gatehouse-ratelimit"]; mark && (len(got) != 1 || got[0] != "degraded-open") || !mark && got != nil {
		t.Errorf("%s: the upstream saw x-gatehouse-ratelimit %q; want %v", what, got, map[bool]string{true: "[degraded-open]", false: "none"}[mark])
	}
	for _, claim := range []string{"", "x-gatehouse-tier: pro"} {
		var extra []string
		if claim != "" {
			extra = []string{claim}
		}
		if s, _ := status(t, m, "/tiers/x", "", extra...); s != closed {
			t.Errorf("%s: an anonymous request (claiming %q) = %d; want %d", what, claim, s, closed)
		}
	}
	if s, _ := status(t, m, "/public/x", ""); s != http.StatusOK {
		t.Errorf("%s: a route without a rate limit = %d; want 200", what, s)
	}
}

// TestFailureRedisSlow: a Redis that accepts but does not answer (paused)
// is answered by the failure modes once ratelimit.store.timeout passes,
// before Envoy's own timeout: the same answers as with Redis down.
func TestFailureRedisSlow(t *testing.T) {
	m := failureMesh(t, "closed")
	tok := harness.DemoToken(t, "sam", "pro", "", nil)
	if s, _ := status(t, m, "/tiers/x", tok); s != http.StatusOK {
		t.Fatalf("before: /tiers = %d; want 200", s)
	}
	rdb := redis.NewClient(&redis.Options{Addr: m.Redis.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	// WRITE pauses every script (the limiter's round trips) but lets
	// CLIENT UNPAUSE through.
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	defer rdb.Do(ctx, "CLIENT", "UNPAUSE")
	checkTiers(t, m, tok, "Redis paused", http.StatusTooManyRequests)
	if n := m.Gatehouse[0].Metric("gatehouse_ratelimit_store_errors_total", `reason="timeout"`); n < 1 {
		t.Errorf("gatehouse_ratelimit_store_errors_total{reason=\"timeout\"} = %v; want the slow round trips counted as timeouts", n)
	}
	if err := rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery once Redis answers", func() bool { s, _ := status(t, m, "/tiers/x", ""); return s == http.StatusOK })
}

// TestFailureRateLimitServiceDown: with gatehouse's rate limit service
// unreachable (ext_authz still up), Envoy decides by the tier's failure
// mode: the fail-open filter lets an authenticated request through
// (without a mark: no gatehouse answered), the fail-closed one refuses an
// anonymous request (500, Envoy's answer when failure_mode_deny refuses),
// and a route that is closed for every tier refuses its verified callers.
func TestFailureRateLimitServiceDown(t *testing.T) {
	m := failureMesh(t, "closed")
	tok := harness.DemoToken(t, "tess", "pro", "", nil)
	if s, _ := status(t, m, "/tiers/x", tok); s != http.StatusOK {
		t.Fatalf("before: /tiers = %d; want 200", s)
	}
	m.Gatehouse[0].Kill() // xDS and the rate limit service; Envoy keeps its config
	eventually(t, "Envoy noticing the rate limit service gone", func() bool {
		s, _ := status(t, m, "/tiers/x", "")
		return s == http.StatusInternalServerError
	})
	checkTiers(t, m, tok, "rate limit service down", http.StatusInternalServerError, false)
	if s, _ := status(t, m, "/rl-closed", tok); s != http.StatusInternalServerError {
		t.Errorf("rate limit service down, failureMode closed: %d; want 500", s)
	}
	if s, _ := status(t, m, "/rl-open", tok); s != http.StatusOK {
		t.Errorf("rate limit service down, failureMode open: %d; want 200", s)
	}
	// Envoy's own witnesses, per filter (the second one has its prefix).
	if n := m.Envoy.Stat("cluster.echo.ratelimit.failure_mode_allowed"); n < 1 {
		t.Errorf("cluster.echo.ratelimit.failure_mode_allowed = %d; want the fail-open filter's admissions counted", n)
	}
	if n := m.Envoy.Stat("cluster.echo.ratelimit.fail_closed.error"); n < 1 {
		t.Errorf("cluster.echo.ratelimit.fail_closed.error = %d; want the fail-closed filter's errors counted", n)
	}
	m.Gatehouse[0].Start()
	m.WaitSynced(1)
	eventually(t, "recovery once the rate limit service is back", func() bool { s, _ := status(t, m, "/tiers/x", ""); return s == http.StatusOK })
}

// TestFailureGatehouseRestart: while gatehouse is down Envoy keeps its
// config and serves what needs no gatehouse; when it is back, Envoy
// reconnects and ends up in sync on the same versions.
func TestFailureGatehouseRestart(t *testing.T) {
	m := failureMesh(t, "closed")
	before, err := m.Gatehouse[0].Node("envoy-e2e-1")
	if err != nil {
		t.Fatal(err)
	}
	m.Gatehouse[0].Kill()
	m.Gatehouse[1].Kill()
	for i := 0; i < 5; i++ {
		if s, _ := status(t, m, "/public/x", ""); s != http.StatusOK {
			t.Fatalf("gatehouse down: public route %d; want 200 (Envoy keeps its config)", s)
		}
		if s, _ := status(t, m, "/healthz", ""); s != http.StatusOK {
			t.Fatalf("gatehouse down: /healthz %d; want 200", s)
		}
	}
	m.Gatehouse[0].Start()
	m.Gatehouse[1].Start()
	m.WaitSynced(1)
	after, err := m.Gatehouse[0].Node("envoy-e2e-1")
	if err != nil {
		t.Fatal(err)
	}
	for typ, st := range before.Types {
		if after.Types[typ].Acked != st.Acked {
			t.Errorf("%s: acked %q after the restart, %q before; want the same content version", typ, after.Types[typ].Acked, st.Acked)
		}
	}
	tok := harness.DemoToken(t, "ada", "pro", "", nil)
	if s, _ := status(t, m, "/api/x", tok); s != http.StatusOK {
		t.Errorf("after the restart: /api/x = %d; want 200", s)
	}
}
