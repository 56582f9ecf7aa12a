package envoy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/ratelimit/algo"
	"github.com/gatehouse/gatehouse/ratelimit/budget"
	"github.com/gatehouse/gatehouse/test/harness"
)

// budgetConfig: a chat route with a monthly token budget per tier (a
// calendar month in Berlin), the estimate read from max_tokens, the cost
// from usage.total_tokens of a JSON answer or of an event stream's last
// usage event. The route also redacts its JSON answers (the post_authz
// stage, which buffers them) beside the budget stage (which streams them
// past). ext_proc is served by three replicas (1-3) sharing Redis;
// replica 0 serves xds and ext_authz.
const budgetConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "{{.Admin}}"}
  shutdownTimeout: 3s
redis: {addresses: ["{{.Redis}}"]}
audit: {stdout: true}
authz:
  address: "{{.Authz}}"
  jwt:
    issuers:
      - {name: demo, issuer: "https://demo.gatehouse.invalid", audiences: [gatehouse-demo], algorithms: [RS256], tierClaim: plan, tiers: [free, pro], jwks: '{{.DemoJWKS}}'}
extproc:
  address: "{{.ExtProc}}"
xds:
  address: "{{.XDS}}"
  services:
    authz: "{{with .Replica 0}}{{.Authz}}{{end}}"
    extproc: ["{{with .Replica 1}}{{.ExtProc}}{{end}}", "{{with .Replica 2}}{{.ExtProc}}{{end}}", "{{with .Replica 3}}{{.ExtProc}}{{end}}"]
listeners: [{name: public, address: "{{.Listener}}"}]
clusters: [{name: llm, endpoints: [{address: "{{.Upstream "llm"}}"}]}]
routes:
  - id: chat
    match: {prefix: /v1/chat/completions}
    cluster: llm
    authz: {jwt: {issuers: [demo]}}
    extproc: {redact: {paths: [$.id]}}  # post_authz buffers and masks JSON answers; the budget reads them first
    budget:
      name: tokens
      timeZone: Europe/Berlin
      tiers:
        free: [{amount: 1000, per: month, calendar: true}]
        pro: [{amount: 5000, per: month, calendar: true}, {amount: 1000000, per: minute}]
      reserve: {jsonPath: $.max_tokens, fixed: 100, max: 400}
      cost: {from: json, jsonPath: $.usage.total_tokens}
      hold: 3s
      onExpiry: refund
  # Credits read from a response header: no body goes to gatehouse.
  - id: images
    match: {prefix: /v1/images}
    cluster: llm
    authz: {jwt: {issuers: [demo]}}
    budget:
      name: credits
      unit: credits
      default: [{amount: 1000, per: day}]
      reserve: {fixed: 100}
      cost: {from: header, header: x-llm-total-tokens}
  # The same budget (shared counters) on a route without post_authz
  # processors: its only ext_proc stream is the budget stage's.
  - id: completions
    match: {prefix: /v1/completions}
    cluster: llm
    authz: {jwt: {issuers: [demo]}}
    budget:
      name: tokens
      timeZone: Europe/Berlin
      tiers:
        free: [{amount: 1000, per: month, calendar: true}]
      reserve: {jsonPath: $.max_tokens, fixed: 100, max: 400}
      cost: {from: json, jsonPath: $.usage.total_tokens}
      hold: 3s
      onExpiry: refund
`

// budgetMonth is the budget's monthly window, for reading its counter.
func budgetMonth(t *testing.T) budget.Limit {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return budget.Limit{Amount: 1000, Window: algo.Window{Count: 1, Unit: algo.Month, Calendar: true, Loc: loc}}
}

// TestBudgets proves a cost budget through Envoy: reservation and refund
// of a JSON answer, settlement of a streamed answer from its usage event
// and of one cut short, refusal at exhaustion, exactness across three
// ext_proc replicas, and the expiry of a reservation whose replicas died.
func TestBudgets(t *testing.T) {
	m := harness.Start(t, harness.Options{
		Config:     budgetConfig,
		Replicas:   4,
		Components: []string{"xds,authz", "extproc", "extproc", "extproc"},
		Redis:      true,
		Upstreams:  []string{"llm"},
	})
	m.Upstreams["llm"].Handle(harness.LLM)
	rc := redis.NewClient(&redis.Options{Addr: m.Redis.Addr()})
	t.Cleanup(func() { _ = rc.Close() })
	store := budget.NewRedis(rc, budget.RedisOptions{KeyPrefix: "gh:"})
	month := budgetMonth(t)
	sfx := fmt.Sprint(time.Now().UnixNano())
	used := func(subject string) uint64 {
		t.Helper()
		ws, err := store.Peek(context.Background(), budget.Key("tokens", "subject", subject), []budget.Limit{month})
		if err != nil {
			t.Fatal(err)
		}
		return ws[0].Used
	}
	c := harness.HTTP1()
	chat := func(tok, body string, hdrs ...string) *harness.Response {
		t.Helper()
		return harness.Send(t, c, harness.Request{Method: http.MethodPost, URL: m.URL() + "/v1/chat/completions", Body: body,
			Headers: append([]string{"authorization: Bearer " + tok, "content-type: application/json"}, hdrs...)})
	}

	t.Run("reserve and refund", func(t *testing.T) {
		sub := "alice-" + sfx
		tok := harness.DemoToken(t, sub, "free", "", nil)
		r := chat(tok, `{"max_tokens":300}`, harness.HeaderLLMUsage+": 120")
		if r.Status != http.StatusOK {
			t.Fatalf("first request: %d %s", r.Status, r.Body)
		}
		// 300 reserved of 1000 when the request went up and the answer
		// came back; the upstream saw both figures.
		for h, want := range map[string]string{"x-gatehouse-budget-remaining": "700", "x-seen-budget-remaining": "700", "x-seen-budget-reserved": "300"} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s = %q; want %q", h, got, want)
			}
		}
		if got := r.Header.Get("ratelimit"); !strings.HasPrefix(got, `"tokens-1moc";r=700;t=`) {
			t.Errorf("RateLimit = %q", got)
		}
		if got := r.Header.Get("ratelimit-policy"); got != `"tokens-1moc";q=1000;w=2592000;qu="tokens"` {
			t.Errorf("RateLimit-Policy = %q", got)
		}
		if got := used(sub); got != 120 {
			t.Errorf("after the answer: used %d; want 120 (180 of the 300 reserved refunded)", got)
		}
		// The post_authz stage redacted the answer the budget read.
		if body := string(r.Body); strings.Contains(body, "chatcmpl-1") || !strings.Contains(body, `"total_tokens":120`) {
			t.Errorf("answer %s; want its id redacted and its usage kept", body)
		}
		r = chat(tok, `{"max_tokens":300}`)
		if got := r.Header.Get("x-gatehouse-budget-remaining"); got != "580" {
			t.Errorf("second request: remaining %q; want 580 (1000 - 120 spent - 300 reserved)", got)
		}
	})

	t.Run("streamed answers", func(t *testing.T) {
		sub := "bob-" + sfx
		tok := harness.DemoToken(t, sub, "free", "", nil)
		r := chat(tok, `{"max_tokens":200,"stream":true}`, harness.HeaderLLMUsage+": 350")
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"total_tokens":350`) || !strings.HasSuffix(string(r.Body), "data: [DONE]\n\n") {
			t.Fatalf("stream: %d %q", r.Status, r.Body)
		}
		if got := used(sub); got != 350 {
			t.Errorf("after the stream: used %d; want 350 (its usage event: 150 over the estimate)", got)
		}
		// A stream cut before its usage event costs its estimate.
		_, _ = harness.TrySend(c, harness.Request{Method: http.MethodPost, URL: m.URL() + "/v1/chat/completions", Body: `{"max_tokens":200,"stream":true}`,
			Headers: []string{"authorization: Bearer " + tok, harness.HeaderLLMCut + ": true"}})
		deadline := time.Now().Add(5 * time.Second)
		for used(sub) != 550 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := used(sub); got != 550 {
			t.Errorf("after a cut stream: used %d; want 550 (its estimate of 200)", got)
		}
	})

	t.Run("error answers and header costs", func(t *testing.T) {
		sub := "frank-" + sfx
		tok := harness.DemoToken(t, sub, "free", "", nil)
		if r := chat(tok, `{"max_tokens":300}`, harness.HeaderLLMError+": 503"); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("error answer: %d %s", r.Status, r.Body)
		}
		if got := used(sub); got != 0 {
			t.Errorf("after an error answer without usage: used %d; want 0 (its 300 refunded)", got)
		}
		r := harness.Send(t, c, harness.Request{Method: http.MethodPost, URL: m.URL() + "/v1/images", Body: `{"max_tokens":37}`,
			Headers: []string{"authorization: Bearer " + tok}})
		if r.Status != http.StatusOK || r.Header.Get("x-gatehouse-budget-remaining") != "900" {
			t.Fatalf("images: %d, remaining %q; want 200 and 900 (100 reserved of 1000)", r.Status, r.Header.Get("x-gatehouse-budget-remaining"))
		}
		day := budget.Limit{Amount: 1000, Window: algo.Window{Count: 1, Unit: algo.Day}}
		ws, err := store.Peek(context.Background(), budget.Key("credits", "subject", sub), []budget.Limit{day})
		if err != nil || ws[0].Used != 37 {
			t.Errorf("credits used %+v, %v; want 37, read from the response header", ws, err)
		}
		if got := r.Header.Get("ratelimit-policy"); got != `"credits-1d";q=1000;w=86400;qu="credits"` {
			t.Errorf("images RateLimit-Policy = %q", got)
		}
	})

	t.Run("refusal at exhaustion", func(t *testing.T) {
		sub := "dave-" + sfx
		tok := harness.DemoToken(t, sub, "free", "", nil)
		for i := 0; i < 2; i++ {
			if r := chat(tok, `{"max_tokens":400}`); r.Status != http.StatusOK {
				t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
			}
		}
		before := m.Upstreams["llm"].Count()
		r := chat(tok, `{"max_tokens":400}`)
		if r.Status != http.StatusTooManyRequests {
			t.Fatalf("400 more with 200 left: %d %s; want 429", r.Status, r.Body)
		}
		if got := r.Header.Get("ratelimit"); !strings.HasPrefix(got, `"tokens-1moc";r=200;`) {
			t.Errorf("429 RateLimit = %q; want r=200", got)
		}
		if r.Header.Get("retry-after") == "" || r.Header.Get("ratelimit-policy") == "" || r.Header.Get("content-type") != "application/problem+json" {
			t.Errorf("429 headers %v", r.Header)
		}
		if n := m.Upstreams["llm"].Count(); n != before {
			t.Errorf("the refused request reached the upstream")
		}
		// A request that fits what is left still passes.
		if r := chat(tok, `{"max_tokens":150}`); r.Status != http.StatusOK {
			t.Errorf("150 with 200 left: %d", r.Status)
		}
	})

	t.Run("exact across three replicas", func(t *testing.T) {
		sub := "exact-" + sfx
		tok := harness.DemoToken(t, sub, "pro", "", nil)
		const requests, workers, estimate = 100, 12, 100
		var mu sync.Mutex
		var admitted, refused int
		var spent, under uint64
		var wg sync.WaitGroup
		jobs := make(chan uint64)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl := harness.HTTP1()
				for usage := range jobs {
					r, err := harness.TrySend(cl, harness.Request{Method: http.MethodPost, URL: m.URL() + "/v1/chat/completions",
						Body: fmt.Sprintf(`{"max_tokens":%d}`, estimate), Headers: []string{"authorization: Bearer " + tok, fmt.Sprintf("%s: %d", harness.HeaderLLMUsage, usage)}})
					mu.Lock()
					switch {
					case err != nil:
						t.Errorf("request: %v", err)
					case r.Status == http.StatusOK:
						admitted++
						spent += usage
						if usage > estimate {
							under += usage - estimate
						}
					case r.Status == http.StatusTooManyRequests:
						refused++
					default:
						t.Errorf("request: %d %s", r.Status, r.Body)
					}
					mu.Unlock()
				}
			}()
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < requests; i++ {
			jobs <- rng.Uint64N(151) // 0-150 tokens for an estimate of 100
		}
		close(jobs)
		wg.Wait()
		got := used(sub)
		t.Logf("%d admitted, %d refused; used %d of 5000; under-estimates %d", admitted, refused, got, under)
		if refused == 0 {
			t.Fatal("nothing was refused: the budget was never reached")
		}
		if got != spent {
			t.Errorf("used %d; want exactly the admitted requests' usage, %d", got, spent)
		}
		if got > 5000+under {
			t.Errorf("used %d; want at most the budget plus the under-estimates, %d", got, 5000+under)
		}
		for i, g := range m.Gatehouse[1:] {
			if n := g.Metric("gatehouse_extproc_budget_requests_total", `route="chat"`); n < 1 {
				t.Errorf("replica %d reserved for %v requests; want some (Envoy balances over all three)", i+1, n)
			}
		}
		// Every settlement is audited, with its cost's source.
		a := m.Gatehouse[1].WaitAudit("budget.settle", func(l map[string]any) bool {
			return l["kind"] == "budget.settle" && l["decision"] == "settled" && l["reason"] == "cost_json"
		})
		if a == nil || a["tier"] != "pro" && a["tier"] != "free" {
			t.Errorf("audit line %v", a)
		}
	})

	t.Run("orphaned reservation expires", func(t *testing.T) {
		sub := "erin-" + sfx
		tok := harness.DemoToken(t, sub, "free", "", nil)
		done := make(chan struct{})
		// On the route without post_authz processors, so that the budget
		// stage's is the request's only ext_proc stream: with another on
		// a replica killed first, Envoy would fail the request, and the
		// budget stage, still alive, would settle its error response.
		go func() {
			defer close(done)
			_, _ = harness.TrySend(harness.HTTP1(), harness.Request{Method: http.MethodPost, URL: m.URL() + "/v1/completions",
				Body: `{"max_tokens":300,"stream":true}`, Headers: []string{"authorization: Bearer " + tok, harness.HeaderLLMPause + ": 700ms"}})
		}()
		deadline := time.Now().Add(5 * time.Second)
		for used(sub) != 300 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := used(sub); got != 300 {
			t.Fatalf("in flight: used %d; want the 300 reserved", got)
		}
		reserved := time.Now()
		// Every ext_proc replica dies with the stream open: nobody settles.
		for _, g := range m.Gatehouse[1:] {
			g.Kill()
		}
		<-done
		if got := used(sub); got != 300 {
			t.Fatalf("after the replicas died: used %d; want 300 still reserved", got)
		}
		for _, g := range m.Gatehouse[1:] {
			g.Start()
		}
		time.Sleep(time.Until(reserved.Add(3500 * time.Millisecond)))
		// The next reservation of the budget reconciles the orphan first
		// (onExpiry: refund), then reserves its own 10.
		var r *harness.Response
		deadline = time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			r = chat(tok, `{"max_tokens":10}`, harness.HeaderLLMUsage+": 10")
			if r.Status == http.StatusOK {
				break
			}
			time.Sleep(200 * time.Millisecond) // Envoy sees the restarted replicas healthy
		}
		if r.Status != http.StatusOK {
			t.Fatalf("after the restart: %d %s", r.Status, r.Body)
		}
		if got := r.Header.Get("x-gatehouse-budget-remaining"); got != "990" {
			t.Errorf("remaining %q; want 990 (the orphan's 300 refunded, 10 reserved)", got)
		}
		if got := used(sub); got != 10 {
			t.Errorf("used %d; want 10", got)
		}
		var expired float64
		for _, g := range m.Gatehouse[1:] {
			expired += max(0, g.Metric("gatehouse_extproc_budget_expired_total", `route="chat"`)) // -1: no series
		}
		if expired != 1 {
			t.Errorf("gatehouse_extproc_budget_expired_total = %v; want 1", expired)
		}
	})
}
