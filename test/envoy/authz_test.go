package envoy_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// clients are the protocols every request-level test is run with.
var clients = []struct {
	name string
	c    *http.Client
}{{"http1", harness.HTTP1()}, {"http2", harness.HTTP2()}}

// testAuthzIdentity: a demo JWT reaches the upstream with the x-gatehouse-*
// identity headers ext_authz set, over HTTP/1.1 and HTTP/2.
func testAuthzIdentity(t *testing.T, m *harness.Mesh) {
	tok := harness.DemoToken(t, "ada", "pro", "hello:read", map[string]any{"email": "ada@example.com"})
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			r := harness.Send(t, c.c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"authorization: Bearer " + tok}})
			e, ok := r.Echo()
			if r.Status != http.StatusOK || !ok {
				t.Fatalf("GET /api/hello = %d %s; want 200 from the upstream", r.Status, r.Body)
			}
			if want := map[string]bool{"http1": r.Proto == "HTTP/1.1", "http2": r.Proto == "HTTP/2.0"}; !want[c.name] {
				t.Errorf("client spoke %s", r.Proto)
			}
			for h, want := range map[string]string{
				"x-gatehouse-subject": "ada", "x-gatehouse-tier": "pro", "x-gatehouse-issuer": harness.DemoIssuer,
				"x-gatehouse-auth-method": "jwt", "x-user-email": "ada@example.com",
			} {
				if got := e.Header(h); got != want {
					t.Errorf("upstream saw %s = %q; want %q", h, got, want)
				}
			}
			// The decision id goes back to the client, not upstream.
			if r.Header.Get("x-gatehouse-decision-id") == "" {
				t.Error("the client got no x-gatehouse-decision-id")
			}
			if v, ok := e.Headers["x-gatehouse-decision-id"]; ok {
				t.Errorf("upstream saw x-gatehouse-decision-id %q", v)
			}
		})
	}
}

// testAuthzDenials: no credentials → 401 with WWW-Authenticate and the
// decision id; a token without the route's scope → 403; neither reaches
// the upstream.
func testAuthzDenials(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	before := up.Count()
	c := harness.HTTP1()
	r := harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello"})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("no credentials: status %d %s; want 401", r.Status, r.Body)
	}
	if w := r.Header.Get("www-authenticate"); !strings.HasPrefix(w, "Bearer ") {
		t.Errorf("no credentials: WWW-Authenticate = %q; want a Bearer challenge", w)
	}
	id := r.Header.Get("x-gatehouse-decision-id")
	if id == "" {
		t.Error("no credentials: no x-gatehouse-decision-id on the 401")
	}
	// The decision id names the audit line of the refusal.
	m.Gatehouse[0].WaitAudit("the 401's decision "+id, func(l map[string]any) bool {
		return l["id"] == id || l["decision_id"] == id
	})

	tok := harness.DemoToken(t, "bob", "free", "orders:read", nil)
	r = harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"authorization: Bearer " + tok}})
	if r.Status != http.StatusForbidden {
		t.Errorf("wrong scope: status %d %s; want 403", r.Status, r.Body)
	}
	r = harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"authorization: Bearer not.a.jwt"}})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("garbage token: status %d; want 401", r.Status)
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("the upstream saw %d refused requests", n)
	}
}

// testAuthzAPIKey: the demo API key is accepted, and its subject and tier
// reach the upstream; a wrong key is refused.
func testAuthzAPIKey(t *testing.T, m *harness.Mesh) {
	c := harness.HTTP2()
	r := harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"x-api-key: " + harness.DemoAPIKey}})
	e, ok := r.Echo()
	if r.Status != http.StatusOK || !ok {
		t.Fatalf("API key: %d %s; want 200", r.Status, r.Body)
	}
	if e.Header("x-gatehouse-subject") != "demo-partner" || e.Header("x-gatehouse-tier") != "pro" || e.Header("x-gatehouse-auth-method") != "apikey" {
		t.Errorf("API key: upstream saw subject %q tier %q method %q; want demo-partner, pro, apikey",
			e.Header("x-gatehouse-subject"), e.Header("x-gatehouse-tier"), e.Header("x-gatehouse-auth-method"))
	}
	r = harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"x-api-key: gh_demo_apikey_0123456789abcdeX"}})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("wrong API key: %d; want 401", r.Status)
	}
}

// testAuthzSpoofedIdentity: identity headers a client sends never reach the
// upstream; the verified ones replace them.
func testAuthzSpoofedIdentity(t *testing.T, m *harness.Mesh) {
	tok := harness.DemoToken(t, "eve", "free", "hello:read", nil)
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/api/hello", Headers: []string{
		"authorization: Bearer " + tok, "x-gatehouse-tier: enterprise", "x-gatehouse-subject: root",
		"x-gatehouse-auth-method: mtls", "x-gatehouse-decision-id: forged",
	}})
	e, ok := r.Echo()
	if r.Status != http.StatusOK || !ok {
		t.Fatalf("status %d %s; want 200", r.Status, r.Body)
	}
	for h, want := range map[string]string{"x-gatehouse-tier": "free", "x-gatehouse-subject": "eve", "x-gatehouse-auth-method": "jwt"} {
		if got := e.Headers[h]; len(got) != 1 || got[0] != want {
			t.Errorf("upstream saw %s = %q; want only %q", h, got, want)
		}
	}
	if got, ok := e.Headers["x-gatehouse-decision-id"]; ok {
		t.Errorf("upstream saw the client's x-gatehouse-decision-id %q", got)
	}
	if got := r.Header.Get("x-gatehouse-decision-id"); got == "" || got == "forged" {
		t.Errorf("client got x-gatehouse-decision-id %q; want gatehouse's own", got)
	}
}

// testAuthzWebhooks: GitHub and Stripe deliveries signed over the exact raw
// body pass; a changed byte fails; the same delivery again is a replay.
func testAuthzWebhooks(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	c := harness.HTTP1()
	mac := func(secret, msg string) string {
		h := hmac.New(sha256.New, []byte(secret))
		h.Write([]byte(msg))
		return hex.EncodeToString(h.Sum(nil))
	}
	body := fmt.Sprintf(`{"action":"opened","number":%d,"note":"  spaces and \u00e9 kept  "}`, time.Now().UnixNano())
	github := func(b, sig string) *harness.Response {
		return harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + "/hooks/github", Body: b, Headers: []string{
			"content-type: application/json", "x-github-event: pull_request",
			"x-github-delivery: " + strconv.FormatInt(time.Now().UnixNano(), 10), "x-hub-signature-256: sha256=" + sig,
		}})
	}
	r := github(body, mac(githubSecret, body))
	e, ok := r.Echo()
	if r.Status != http.StatusOK || !ok {
		t.Fatalf("GitHub delivery: %d %s; want 200", r.Status, r.Body)
	}
	if e.Body != body || e.Header("x-gatehouse-subject") != "github" || e.Header("x-gatehouse-auth-method") != "webhook" {
		t.Errorf("GitHub delivery: upstream saw body %q subject %q method %q", e.Body, e.Header("x-gatehouse-subject"), e.Header("x-gatehouse-auth-method"))
	}
	if r := github(body, mac(githubSecret, body)); r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden && r.Status != http.StatusConflict {
		t.Errorf("GitHub replay: %d %s; want refused", r.Status, r.Body)
	}
	changed := strings.Replace(body, "opened", "openeD", 1)
	if r := github(changed, mac(githubSecret, body)); r.Status != http.StatusUnauthorized {
		t.Errorf("GitHub delivery with a changed byte: %d %s; want 401", r.Status, r.Body)
	}

	before := up.Count()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sbody := fmt.Sprintf(`{"id":"evt_%d","type":"charge.succeeded"}`, time.Now().UnixNano())
	stripe := func(b, sig string) *harness.Response {
		return harness.Send(t, harness.HTTP2(), harness.Request{Method: "POST", URL: m.URL() + "/hooks/stripe", Body: b, Headers: []string{
			"content-type: application/json", "stripe-signature: t=" + ts + ",v1=" + sig,
		}})
	}
	if r := stripe(sbody, mac(stripeSecret, ts+"."+sbody)); r.Status != http.StatusOK {
		t.Fatalf("Stripe delivery: %d %s; want 200", r.Status, r.Body)
	}
	if r := stripe(sbody, mac(stripeSecret, ts+"."+sbody)); r.Status == http.StatusOK {
		t.Errorf("Stripe replay: 200; want refused")
	}
	if r := stripe(sbody+" ", mac(stripeSecret, ts+"."+sbody)); r.Status != http.StatusUnauthorized {
		t.Errorf("Stripe delivery with a byte added: %d; want 401", r.Status)
	}
	if n := up.Count() - before; n != 1 {
		t.Errorf("the upstream saw %d Stripe deliveries; want exactly 1", n)
	}
}

// testAuthzPathTricks: spellings of /admin that Envoy normalises cannot skip
// the admin route's policy: a token without the admin scope never gets a
// request to /admin through, however the path is written.
func testAuthzPathTricks(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	tok := harness.DemoToken(t, "mallory", "pro", "hello:read", nil)
	admin := harness.DemoToken(t, "root", "pro", "hello:read admin", nil)
	c := harness.HTTP1()
	if r := harness.Send(t, c, harness.Request{URL: m.URL() + "/admin/users", Headers: []string{"authorization: Bearer " + admin}}); r.Status != http.StatusOK {
		t.Fatalf("/admin/users with the admin scope: %d %s; want 200", r.Status, r.Body)
	}
	for _, p := range []string{"/admin/users", "//admin/users", "/%61dmin/users", "/api/../admin/users", "/./admin/users", "/admin/./users", "/x/%2e%2e/admin/users", "/admin%2fusers"} {
		up.Reset()
		r, err := harness.TrySend(c, harness.Request{URL: m.URL() + p, Headers: []string{"authorization: Bearer " + tok}})
		if err != nil {
			// Go's client refuses to send some spellings; nothing got through.
			continue
		}
		for _, e := range up.Seen() {
			if strings.HasPrefix(strings.ToLower(e.Path), "/admin") {
				t.Errorf("%s: the upstream saw %s (answer %d); want refused", p, e.Path, r.Status)
			}
		}
		if r.Status == http.StatusOK {
			t.Errorf("%s: 200 without the admin scope", p)
		}
	}
}
