package extproc

import (
	"context"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/component"
)

var idemConfig = `
extproc: {}
routes:
  - id: pay
    match: {prefix: /pay}
    extproc:
      hygiene: {}
      redact: {}
      idempotency: {required: false}
  - id: strict
    match: {prefix: /strict}
    extproc:
      idempotency: {required: true, methods: [POST, PUT]}
`

func post(route, key, auth string) *extprocv3.ProcessingRequest {
	kv := []string{":authority", "api", ":path", "/" + route, ":method", "POST", "content-type", "application/json"}
	if key != "" {
		kv = append(kv, "idempotency-key", key)
	}
	if auth != "" {
		kv = append(kv, "authorization", auth)
	}
	return requestHeaders(route, false, buffered, kv...)
}

func TestIdempotency(t *testing.T) {
	s, reg := testServer(t, testConfig(t, idemConfig), component.Deps{})
	first := mustExchange(t, s,
		post("pay", "k1", "Bearer a"), requestBody(`{"amount":10}`, true),
		responseHeaders(false, ":status", "201", "content-type", "application/json", "location", "/pay/7", "server", "x", "content-length", "40",
			"set-cookie", "a=1", "set-cookie", "b=2"),
		responseBody(`{"id":7,"card":"4111 1111 1111 1111"}`, true))
	if len(first) != 4 || first[1].GetRequestBody() == nil {
		t.Fatalf("first request answers %v; want it to go on", first)
	}

	// The retry gets the stored (redacted) response, without the upstream.
	retry := mustExchange(t, s, post("pay", "k1", "Bearer a"), requestBody(`{"amount":10}`, true))
	ir := retry[1].GetImmediateResponse()
	if ir == nil || ir.GetStatus().GetCode() != 201 || string(ir.GetBody()) != `{"id":7,"card":"**** **** **** 1111"}` {
		t.Fatalf("retry = %v; want the stored 201 replayed", retry[1])
	}
	set := setHeaders(ir.GetHeaders())
	if set["idempotent-replayed"] != "true" || set["location"] != "/pay/7" || set["x-content-type-options"] != "nosniff" {
		t.Errorf("replay headers %v", set)
	}
	for _, h := range []string{"server", "content-length"} {
		if _, ok := set[h]; ok {
			t.Errorf("replay carries %s", h)
		}
	}
	var cookies []string
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == "set-cookie" {
			cookies = append(cookies, h.GetAppendAction().String()+" "+string(h.GetHeader().GetRawValue()))
		}
	}
	if diff := cmp.Diff([]string{"OVERWRITE_IF_EXISTS_OR_ADD a=1", "APPEND_IF_EXISTS_OR_ADD b=2"}, cookies); diff != "" {
		t.Errorf("replayed set-cookie headers mismatch (-want +got):\n%s", diff)
	}

	// Same key, other payload: 422. Same key, other caller: a new key.
	if code, _ := problemOf(t, mustExchange(t, s, post("pay", "k1", "Bearer a"), requestBody(`{"amount":11}`, true))[1]); code != 422 {
		t.Errorf("other payload = %d; want 422", code)
	}
	if got := mustExchange(t, s, post("pay", "k1", "Bearer b"), requestBody(`{"amount":10}`, true)); got[1].GetRequestBody() == nil {
		t.Errorf("same key by another caller = %v; want it to run", got[1])
	}

	// In flight: a second stream with the key while the first has no
	// response yet gets 409.
	st := s.newStream()
	for _, m := range []*extprocv3.ProcessingRequest{post("pay", "k2", ""), requestBody(`{}`, true)} {
		if _, err := st.handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if code, p := problemOf(t, mustExchange(t, s, post("pay", "k2", ""), requestBody(`{}`, true))[1]); code != 409 || p.Type != problemKeyInFlight {
		t.Errorf("retry in flight = %d %+v; want 409", code, p)
	}
	// The first request is cancelled: its key is freed for a retry.
	st.finish(context.Canceled)
	if got := mustExchange(t, s, post("pay", "k2", ""), requestBody(`{}`, true)); got[1].GetRequestBody() == nil {
		t.Errorf("retry after the first was cancelled = %v; want it to run", got[1])
	}

	// A 503 is not stored: the retry runs again.
	mustExchange(t, s, post("pay", "k3", ""), requestBody(`{}`, true), responseHeaders(true, ":status", "503"))
	if got := mustExchange(t, s, post("pay", "k3", ""), requestBody(`{}`, true)); got[1].GetRequestBody() == nil {
		t.Errorf("retry after a 503 = %v; want it to run", got[1])
	}

	// GET is not covered; a bad key is refused.
	if got := mustExchange(t, s, requestHeaders("pay", true, buffered, ":path", "/pay", ":method", "GET", "idempotency-key", "k1")); got[0].GetRequestHeaders() == nil {
		t.Errorf("GET with a key = %v; want it to go on", got[0])
	}
	if code, p := problemOf(t, mustExchange(t, s, post("pay", "bad key", ""))[0]); code != 400 || p.Type != problemKeyInvalid {
		t.Errorf("bad key = %d %+v; want 400", code, p)
	}
	if code, p := problemOf(t, mustExchange(t, s, post("strict", "", ""))[0]); code != 400 || p.Type != problemKeyMissing {
		t.Errorf("missing required key = %d %+v; want 400", code, p)
	}
	for res, want := range map[string]float64{"acquired": 6, "replay": 1, "mismatch": 1, "in_flight": 1, "stored": 1, "released": 5, "invalid_key": 1} {
		if got := counter(t, reg, "gatehouse_extproc_idempotency_total", "route", "pay", "result", res); got != want {
			t.Errorf("idempotency_total{%s} = %v; want %v", res, got, want)
		}
	}
}

// TestIdempotencyScopedByEveryCredential: callers identified by an API key
// header (or a JWT read from another header or a cookie) must not share a
// key space just because they send no Authorization header.
func TestIdempotencyScopedByEveryCredential(t *testing.T) {
	cfg := testConfig(t, `
authz:
  apiKeys: {header: x-partner-key, keys: [{id: k, hash: "sha256:`+strings.Repeat("a", 64)+`", subject: s}]}
  jwt:
    from: [{header: x-token}, {cookie: session}]
    issuers: [{name: a, issuer: https://a.example, algorithms: [ES256], jwks: '{"keys":[]}'}]
`+idemConfig)
	if diff := cmp.Diff([]string{"authorization", "x-token", "cookie", "x-partner-key"}, credentialHeaders(cfg)); diff != "" {
		t.Errorf("credentialHeaders mismatch (-want +got):\n%s", diff)
	}
	s, _ := testServer(t, cfg, component.Deps{})
	call := func(partner string) []*extprocv3.ProcessingResponse {
		kv := []string{":authority", "api", ":path", "/pay", ":method", "POST", "content-type", "application/json",
			"idempotency-key", "k1", "x-partner-key", partner}
		return mustExchange(t, s, requestHeaders("pay", false, buffered, kv...), requestBody(`{"amount":10}`, true),
			responseHeaders(false, ":status", "201", "content-type", "application/json"), responseBody(`{"id":7}`, true))
	}
	call("partner-a")
	if got := call("partner-b"); got[1].GetImmediateResponse() != nil {
		t.Fatalf("same key by another partner = %v; want it to run, not partner-a's response", got[1])
	}
	if got := call("partner-a"); got[1].GetImmediateResponse() == nil {
		t.Fatalf("retry by the same partner = %v; want the stored response", got[1])
	}
}
