package envoy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// testRateLimitQuota: Envoy's rate limit filter, fed by ext_authz's
// metadata, refuses the free tier's fourth request a minute with 429 and
// the RateLimit headers; another subject of the same tier has its own
// quota; a client's own tier or subject headers change nothing.
func testRateLimitQuota(t *testing.T, m *harness.Mesh) {
	c := harness.HTTP1()
	sfx := fmt.Sprint(time.Now().UnixNano())
	alice := harness.DemoToken(t, "alice-"+sfx, "free", "", nil)
	bob := harness.DemoToken(t, "bob-"+sfx, "free", "", nil)
	get := func(tok string, extra ...string) *harness.Response {
		return harness.Send(t, c, harness.Request{URL: m.URL() + "/quota", Headers: append([]string{"authorization: Bearer " + tok}, extra...)})
	}
	for i := 1; i <= 3; i++ {
		r := get(alice)
		if r.Status != http.StatusOK {
			t.Fatalf("request %d of 3: %d %s; want 200", i, r.Status, r.Body)
		}
		if want := fmt.Sprintf("r=%d", 3-i); !strings.Contains(r.Header.Get("ratelimit"), want) {
			t.Errorf("request %d: RateLimit = %q; want %s", i, r.Header.Get("ratelimit"), want)
		}
		if p := r.Header.Get("ratelimit-policy"); !strings.Contains(p, "q=3") || !strings.Contains(p, "w=60") {
			t.Errorf("request %d: RateLimit-Policy = %q; want q=3 w=60", i, p)
		}
	}
	r := get(alice)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("request 4 of 3: %d; want 429", r.Status)
	}
	for _, h := range []string{"ratelimit", "ratelimit-policy", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} {
		if r.Header.Get(h) == "" {
			t.Errorf("429 has no %s header (headers %v)", h, r.Header)
		}
	}
	if got := r.Header.Get("x-ratelimit-remaining"); got != "0" {
		t.Errorf("429: X-RateLimit-Remaining = %q; want 0", got)
	}
	// Claiming another tier or subject by header does not escape the quota.
	for _, spoof := range [][]string{{"x-gatehouse-tier: enterprise"}, {"x-gatehouse-subject: bob-" + sfx}, {"x-gatehouse-tier: pro", "x-gatehouse-subject: nobody"}} {
		if r := get(alice, spoof...); r.Status != http.StatusTooManyRequests {
			t.Errorf("with %v: %d; want 429 (tier and subject come from ext_authz only)", spoof, r.Status)
		}
	}
	// The quota is per subject: bob still has his.
	if r := get(bob); r.Status != http.StatusOK {
		t.Errorf("another subject: %d; want 200", r.Status)
	}
	// Envoy counted the refusals as rate limited (its own witness).
	if n := m.Envoy.Stat("cluster.echo.ratelimit.over_limit"); n < 4 {
		t.Errorf("Envoy's cluster.echo.ratelimit.over_limit = %d; want >= 4", n)
	}
}
