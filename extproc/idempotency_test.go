package extproc

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	for res, want := range map[string]float64{"acquired": 6, "replay": 1, "mismatch": 1, "in_flight": 1, "stored": 1, "released": 2, "held": 3, "invalid_key": 1} {
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

// fakeProcess is the server side of one ext_proc stream as Process sees
// it: it receives msgs in order, then end (io.EOF or a reset), and
// records what was sent. failSend makes every Send fail, as when Envoy
// reset the stream before gatehouse answered.
type fakeProcess struct {
	grpc.ServerStream
	ctx      context.Context
	msgs     []*extprocv3.ProcessingRequest
	end      error
	failSend bool
	sent     []*extprocv3.ProcessingResponse
}

func (f *fakeProcess) Context() context.Context { return f.ctx }

func (f *fakeProcess) Recv() (*extprocv3.ProcessingRequest, error) {
	if len(f.msgs) == 0 {
		return nil, f.end
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, nil
}

func (f *fakeProcess) Send(r *extprocv3.ProcessingResponse) error {
	if f.failSend {
		return status.Error(codes.Canceled, "stream reset")
	}
	f.sent = append(f.sent, r)
	return nil
}

// TestIdempotencyHeldAfterForwarding: once the answer that lets a keyed
// request go on has been sent, the upstream may run it; a reset then
// leaves the key held (a retry gets 409) until the response is stored or
// lockTimeout passes. A reset before that answer frees the key.
func TestIdempotencyHeldAfterForwarding(t *testing.T) {
	s, reg := testServer(t, testConfig(t, idemConfig), component.Deps{})
	reset := status.Error(codes.Canceled, "client reset")
	run := func(f *fakeProcess) {
		t.Helper()
		f.ctx = context.Background()
		if err := s.Process(f); err == nil && f.end != io.EOF {
			t.Fatalf("Process = nil; want the reset")
		}
	}
	retryCode := func(key string) int {
		t.Helper()
		out := mustExchange(t, s, post("pay", key, ""), requestBody(`{"n":1}`, true))
		if out[1].GetImmediateResponse() == nil {
			return 0 // goes on
		}
		code, _ := problemOf(t, out[1])
		return code
	}

	// Forwarded, then reset before any response: held.
	first := &fakeProcess{msgs: []*extprocv3.ProcessingRequest{post("pay", "fwd", ""), requestBody(`{"n":1}`, true)}, end: reset}
	run(first)
	if len(first.sent) != 2 || first.sent[1].GetRequestBody() == nil {
		t.Fatalf("first request answers %v; want it forwarded", first.sent)
	}
	if code := retryCode("fwd"); code != 409 {
		t.Errorf("retry after a reset past forwarding = %d; want 409", code)
	}

	// Reset while gatehouse was answering (the answer never went out):
	// not forwarded, so the key is free.
	early := &fakeProcess{msgs: []*extprocv3.ProcessingRequest{post("pay", "early", ""), requestBody(`{"n":1}`, true)}, end: reset, failSend: true}
	run(early)
	if code := retryCode("early"); code != 0 {
		t.Errorf("retry after a reset before forwarding = %d; want it to go on", code)
	}

	// Forwarded, the response headers came, then the reset: the upstream
	// ran, so the key stays held too.
	mid := &fakeProcess{msgs: []*extprocv3.ProcessingRequest{post("pay", "mid", ""), requestBody(`{"n":1}`, true),
		responseHeaders(false, ":status", "201", "content-type", "application/json")}, end: reset}
	run(mid)
	if code := retryCode("mid"); code != 409 {
		t.Errorf("retry after a reset during the response = %d; want 409", code)
	}

	// In flight, then the response arrives: the retry replays it.
	st := s.newStream()
	for _, m := range []*extprocv3.ProcessingRequest{post("pay", "late", ""), requestBody(`{"n":1}`, true)} {
		if _, err := st.handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		st.delivered()
	}
	if code := retryCode("late"); code != 409 {
		t.Errorf("retry while in flight = %d; want 409", code)
	}
	for _, m := range []*extprocv3.ProcessingRequest{responseHeaders(false, ":status", "201", "content-type", "application/json"), responseBody(`{"id":9}`, true)} {
		if _, err := st.handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	st.finish(nil)
	out := mustExchange(t, s, post("pay", "late", ""), requestBody(`{"n":1}`, true))
	if ir := out[1].GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 201 || string(ir.GetBody()) != `{"id":9}` {
		t.Errorf("retry after the response = %v; want the 201 replayed", out[1])
	}
	// Held: fwd, mid, and the retry of early, which went on and ended
	// without a response.
	if got := counter(t, reg, "gatehouse_extproc_idempotency_total", "route", "pay", "result", "held"); got != 3 {
		t.Errorf("idempotency_total{held} = %v; want 3", got)
	}
}

// TestIdempotencyTooLargeToStore: a response too large to store still
// came from an upstream that ran the request: the key stays held.
func TestIdempotencyTooLargeToStore(t *testing.T) {
	s, reg := testServer(t, testConfig(t, `
extproc: {}
routes:
  - id: small
    match: {prefix: /small}
    extproc:
      maxBodySize: 64
      idempotency: {}
`), component.Deps{})
	mustExchange(t, s, post("small", "big", ""), requestBody(`{}`, true),
		responseHeaders(false, ":status", "201", "content-type", "application/json"),
		responseBody(`{"pad":"`+strings.Repeat("x", 100)+`"}`, true))
	out := mustExchange(t, s, post("small", "big", ""), requestBody(`{}`, true))
	if code, _ := problemOf(t, out[1]); code != 409 {
		t.Errorf("retry after a response too large to store = %d; want 409", code)
	}
	if got := counter(t, reg, "gatehouse_extproc_idempotency_total", "route", "small", "result", "too_large"); got != 1 {
		t.Errorf("idempotency_total{too_large} = %v; want 1", got)
	}
}

// TestIdempotencyGatewayTimeout: a 504 says the upstream did not answer
// in time, not that it did not run the request: the key stays held
// rather than freed for a second execution. A 503 (not reached) frees it.
func TestIdempotencyGatewayTimeout(t *testing.T) {
	s, reg := testServer(t, testConfig(t, idemConfig), component.Deps{})
	mustExchange(t, s, post("pay", "slow", ""), requestBody(`{}`, true), responseHeaders(false, ":status", "504", "content-type", "text/plain"),
		responseBody("upstream request timeout", true))
	if code, _ := problemOf(t, mustExchange(t, s, post("pay", "slow", ""), requestBody(`{}`, true))[1]); code != 409 {
		t.Errorf("retry after a 504 = %d; want 409 until lockTimeout", code)
	}
	mustExchange(t, s, post("pay", "down", ""), requestBody(`{}`, true), responseHeaders(true, ":status", "503"))
	if got := mustExchange(t, s, post("pay", "down", ""), requestBody(`{}`, true)); got[1].GetRequestBody() == nil {
		t.Errorf("retry after a 503 = %v; want it to run", got[1])
	}
	if got := counter(t, reg, "gatehouse_extproc_idempotency_total", "route", "pay", "result", "unknown_outcome"); got != 1 {
		t.Errorf("idempotency_total{unknown_outcome} = %v; want 1", got)
	}
}

// TestReadyFromRedisMonitor: with idempotency routes on the shared Redis,
// readiness is the runtime's last background ping, answered at once —
// not a round trip of its own, which a Redis that accepts connections but
// never answers would hold until the caller's deadline (here: forever).
func TestReadyFromRedisMonitor(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		// Accept and never answer: a stalled Redis.
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	client := redis.NewClient(&redis.Options{Addr: lis.Addr().String(), ReadTimeout: -1, Protocol: 2})
	defer client.Close()
	errStale := errors.New("last ping failed")
	var ready atomic.Pointer[error]
	ready.Store(&errStale)
	s, _ := testServer(t, testConfig(t, idemConfig), component.Deps{Redis: client, RedisReady: func() error { return *ready.Load() }})
	if err := s.Ready(context.Background()); !errors.Is(err, errStale) {
		t.Fatalf("Ready = %v; want the monitor's answer %v", err, errStale)
	}
	var none error
	ready.Store(&none)
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v; want nil once the monitor's ping succeeds", err)
	}
}
