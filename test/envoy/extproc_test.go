package envoy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// testExtProcOpenAPI: a body the route's OpenAPI contract refuses is
// answered 400 application/problem+json and never reaches the upstream; a
// valid one passes.
func testExtProcOpenAPI(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	tok := harness.DemoToken(t, "olga", "pro", "", nil)
	c := harness.HTTP2()
	before := up.Count()
	r := harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + "/api/orders", Body: `{"sku":"nope","qty":0}`,
		Headers: []string{"authorization: Bearer " + tok, "content-type: application/json"}})
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Header.Get("content-type"), "application/problem+json") {
		t.Fatalf("invalid body: %d %s %s; want 400 application/problem+json", r.Status, r.Header.Get("content-type"), r.Body)
	}
	var problem map[string]any
	if err := json.Unmarshal(r.Body, &problem); err != nil || problem["status"] != float64(400) || problem["title"] == nil {
		t.Errorf("problem body %s: want an RFC 9457 problem with status 400 and a title", r.Body)
	}
	if n := up.Count() - before; n != 0 {
		t.Errorf("the upstream saw %d invalid requests", n)
	}
	r = harness.Send(t, c, harness.Request{URL: m.URL() + "/api/orders/abc", Headers: []string{"authorization: Bearer " + tok}})
	if r.Status != http.StatusBadRequest {
		t.Errorf("GET /api/orders/abc (id must be an integer): %d; want 400", r.Status)
	}
	r = harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + "/api/orders", Body: `{"sku":"ABC-1234","qty":2}`,
		Headers: []string{"authorization: Bearer " + tok, "content-type: application/json"}})
	if e, ok := r.Echo(); r.Status != http.StatusOK || !ok || e.Body != `{"sku":"ABC-1234","qty":2}` {
		t.Errorf("valid body: %d %s; want the upstream's echo of the body", r.Status, r.Body)
	}
}

// testExtProcRedaction: a response field the route redacts is masked
// before the client sees it.
func testExtProcRedaction(t *testing.T, m *harness.Mesh) {
	tok := harness.DemoToken(t, "rita", "pro", "", nil)
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			r := harness.Send(t, c.c, harness.Request{URL: m.URL() + "/api/orders/7", Headers: []string{
				"authorization: Bearer " + tok, "x-echo-content-type: application/json",
				`x-echo-body: {"id":7,"customer":{"name":"Rita","taxId":"DE-123456789"}}`,
			}})
			if r.Status != http.StatusOK {
				t.Fatalf("status %d %s; want 200", r.Status, r.Body)
			}
			if strings.Contains(string(r.Body), "DE-123456789") || !strings.Contains(string(r.Body), `"taxId":"[REDACTED]"`) || !strings.Contains(string(r.Body), `"name":"Rita"`) {
				t.Errorf("client saw %s; want taxId masked, the rest kept", r.Body)
			}
		})
	}
}

// testExtProcIdempotency: a POST with an Idempotency-Key sent twice reaches
// the upstream once; the second answer is the stored one, marked replayed.
func testExtProcIdempotency(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	tok := harness.DemoToken(t, "ivan", "pro", "", nil)
	key := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	send := func() *harness.Response {
		return harness.Send(t, harness.HTTP1(), harness.Request{Method: "POST", URL: m.URL() + "/api/orders", Body: `{"sku":"IDM-0001","qty":1}`,
			Headers: []string{"authorization: Bearer " + tok, "content-type: application/json", "idempotency-key: " + key}})
	}
	before := up.Count()
	first := send()
	if first.Status != http.StatusOK {
		t.Fatalf("first POST: %d %s; want 200", first.Status, first.Body)
	}
	second := send()
	if second.Status != first.Status || string(second.Body) != string(first.Body) {
		t.Errorf("replay: %d %s; want the stored %d %s", second.Status, second.Body, first.Status, first.Body)
	}
	if second.Header.Get("idempotent-replayed") != "true" {
		t.Errorf("replay: Idempotent-Replayed = %q; want true", second.Header.Get("idempotent-replayed"))
	}
	if n := up.Count() - before; n != 1 {
		t.Errorf("the upstream was called %d times; want once", n)
	}
	// The same key with another body is a misuse, not a replay.
	r := harness.Send(t, harness.HTTP1(), harness.Request{Method: "POST", URL: m.URL() + "/api/orders", Body: `{"sku":"IDM-0002","qty":1}`,
		Headers: []string{"authorization: Bearer " + tok, "content-type: application/json", "idempotency-key: " + key}})
	if r.Status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body: %d %s; want 422", r.Status, r.Body)
	}
}

var (
	uuidRe        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	traceparentRe = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
)

// testExtProcHygiene: the upstream sees a well-formed x-request-id and
// traceparent (generated when the client sent bad ones), and no spoofed
// identity header.
func testExtProcHygiene(t *testing.T, m *harness.Mesh) {
	tok := harness.DemoToken(t, "hugo", "pro", "", nil)
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/api/orders/3", Headers: []string{
		"authorization: Bearer " + tok, "traceparent: garbage", "x-gatehouse-spiffe-id: spiffe://evil/x",
		"x-echo-header: x-powered-by=PHP/5.1",
	}})
	e, ok := r.Echo()
	if r.Status != http.StatusOK || !ok {
		t.Fatalf("status %d %s; want 200", r.Status, r.Body)
	}
	if id := e.Header("x-request-id"); !uuidRe.MatchString(id) {
		t.Errorf("upstream saw x-request-id %q; want a UUID", id)
	}
	if tp := e.Header("traceparent"); !traceparentRe.MatchString(tp) || strings.Contains(tp, "garbage") {
		t.Errorf("upstream saw traceparent %q; want a W3C traceparent generated in place of garbage", tp)
	}
	if v, ok := e.Headers["x-gatehouse-spiffe-id"]; ok {
		t.Errorf("upstream saw a client-sent x-gatehouse-spiffe-id %q", v)
	}
	// Server headers are stripped, Envoy's own timing header included
	// (by the route: Envoy does not let ext_proc remove it).
	for _, h := range []string{"x-envoy-upstream-service-time", "x-powered-by"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("client saw %s: %s", h, v)
		}
	}
}

// testExtProcModeOverride: Envoy accepts the per-route processing modes
// gatehouse pushes: a route without processors opens no ext_proc stream,
// a route that validates request bodies sends Envoy's body message, and no
// stream fails.
func testExtProcModeOverride(t *testing.T, m *harness.Mesh) {
	// The body processors run in the second stage (stages_test.go).
	const prefix = postStats
	tok := harness.DemoToken(t, "mona", "pro", "hello:read", nil)
	c := harness.HTTP1()
	stats := func() map[string]int64 { return m.Envoy.Stats(`^http\.public\.ext_proc\.`) }

	s0 := stats()
	if r := harness.Send(t, c, harness.Request{URL: m.URL() + "/api/hello", Headers: []string{"authorization: Bearer " + tok}}); r.Status != http.StatusOK {
		t.Fatalf("GET /api/hello: %d", r.Status)
	}
	s1 := stats()
	for _, p := range []string{preStats, postStats} {
		if d := s1[p+"streams_started"] - s0[p+"streams_started"]; d != 0 {
			t.Errorf("a route without processors opened %d %s streams; want 0", d, p)
		}
	}
	if r := harness.Send(t, c, harness.Request{URL: m.URL() + "/api/orders/5", Headers: []string{"authorization: Bearer " + tok}}); r.Status != http.StatusOK {
		t.Fatalf("GET /api/orders/5: %d", r.Status)
	}
	s2 := stats()
	getMsgs := s2[prefix+"stream_msgs_sent"] - s1[prefix+"stream_msgs_sent"]
	if r := harness.Send(t, c, harness.Request{Method: "POST", URL: m.URL() + "/api/orders", Body: `{"sku":"MOD-0001","qty":1}`,
		Headers: []string{"authorization: Bearer " + tok, "content-type: application/json"}}); r.Status != http.StatusOK {
		t.Fatalf("POST /api/orders: %d %s", r.Status, r.Body)
	}
	s3 := stats()
	postMsgs := s3[prefix+"stream_msgs_sent"] - s2[prefix+"stream_msgs_sent"]
	if postMsgs != getMsgs+1 {
		t.Errorf("messages Envoy sent to ext_proc: GET %d, POST with body %d; want the POST to add exactly its request body", getMsgs, postMsgs)
	}
	for _, k := range []string{"streams_failed", "spurious_msgs_received", "message_timeouts", "rejected_header_mutations"} {
		for _, p := range []string{preStats, postStats} {
			if s3[p+k] != 0 {
				t.Errorf("Envoy's %s%s = %d; want 0", p, k, s3[p+k])
			}
		}
	}
}
