// Package extproc_test drives `gatehouse serve` (the real runtime, gRPC on
// 127.0.0.1) as Envoy's ext_proc filter does: one stream per HTTP request,
// messages shaped as Envoy builds them, answers read in order.
package extproc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const routes = `
routes:
  - id: headers
    match: {prefix: /h}
    extproc:
      hygiene: {}
  - id: pay-closed
    match: {prefix: /pay}
    extproc:
      hygiene: {}
      redact: {paths: [$.card.cvc]}
      idempotency: {failureMode: closed, lockTimeout: 2s}
  - id: pay-open
    match: {prefix: /open}
    extproc:
      idempotency: {failureMode: open}
`

// serve starts one gatehouse replica serving extproc from config body,
// and returns its ext_proc address.
func serve(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "gatehouse.yaml")
	cfg := "apiVersion: gatehouse/v1\nserver: {admin: {address: 127.0.0.1:0}, shutdownTimeout: 2s}\n" +
		"extproc: {address: 127.0.0.1:0, messageTimeout: 100ms}\n" + body
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := app.Start(ctx, app.Options{ConfigPath: file, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		cancel()
		t.Fatalf("start: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return rt.Addr(config.ComponentExtProc)
}

func client(t *testing.T, addr string) extprocv3.ExternalProcessorClient {
	t.Helper()
	return extprocv3.NewExternalProcessorClient(testenv.Dial(t, addr))
}

func redisSection(addr, prefix string) string {
	return fmt.Sprintf("redis: {addresses: [%q], keyPrefix: %q, dialTimeout: 200ms, readTimeout: 200ms, writeTimeout: 200ms}\n", addr, prefix)
}

// request is one simulated HTTP request's messages.
func request(route, method, path string, body string, extra ...string) []*extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte("api.example.com")}, {Key: ":path", RawValue: []byte(path)},
		{Key: ":method", RawValue: []byte(method)}, {Key: ":scheme", RawValue: []byte("https")},
		{Key: "content-type", RawValue: []byte("application/json")},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		hs = append(hs, &corev3.HeaderValue{Key: extra[i], RawValue: []byte(extra[i+1])})
	}
	first := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: body == ""}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED, ResponseBodyMode: extprocfilterv3.ProcessingMode_BUFFERED},
		Attributes: map[string]*structpb.Struct{contract.ExtProcFilterName: {
			Fields: map[string]*structpb.Value{contract.ExtProcRouteAttribute: structpb.NewStringValue(route)}}},
	}
	msgs := []*extprocv3.ProcessingRequest{first}
	if body != "" {
		msgs = append(msgs, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}})
	}
	return msgs
}

func response(status, body string) []*extprocv3.ProcessingRequest {
	return []*extprocv3.ProcessingRequest{
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":status", RawValue: []byte(status)}, {Key: "content-type", RawValue: []byte("application/json")},
				{Key: "server", RawValue: []byte("upstream/1.0")},
			}}, EndOfStream: body == ""}}},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}},
	}
}

// exchange runs msgs over one stream, each waiting for its answer, stops
// at an immediate response, then half-closes and reads to the end, as
// Envoy does. It returns every answer and the stream's final error.
func exchange(ctx context.Context, c extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	st, err := c.Process(ctx)
	if err != nil {
		return nil, err
	}
	var out []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server ended the stream; Recv says why
		}
		r, err := st.Recv()
		if err != nil {
			return out, err
		}
		if err := r.ValidateAll(); err != nil {
			return out, fmt.Errorf("answer fails Envoy's validation: %w", err)
		}
		out = append(out, r)
		if r.GetImmediateResponse() != nil {
			break
		}
	}
	if err := st.CloseSend(); err != nil {
		return out, err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func immediate(t *testing.T, out []*extprocv3.ProcessingResponse) (int, map[string]any) {
	t.Helper()
	if len(out) == 0 || out[len(out)-1].GetImmediateResponse() == nil {
		t.Fatalf("answers %v; want an immediate response last", out)
	}
	ir := out[len(out)-1].GetImmediateResponse()
	var p map[string]any
	_ = json.Unmarshal(ir.GetBody(), &p)
	return int(ir.GetStatus().GetCode()), p
}

func TestHeaderOnlyRouteOverGRPC(t *testing.T) {
	c := client(t, serve(t, routes))
	msgs := append(request("headers", "GET", "/h", "", "x-gatehouse-tier", "gold", "x-request-id", "r-1"), response("200", "")[0])
	out, err := exchange(ctx(t), c, msgs)
	if err != nil || len(out) != 2 {
		t.Fatalf("exchange = %d answers, %v", len(out), err)
	}
	rm := out[0].GetRequestHeaders().GetResponse().GetHeaderMutation()
	if len(rm.GetRemoveHeaders()) != 1 || rm.GetRemoveHeaders()[0] != "x-gatehouse-tier" {
		t.Errorf("request mutation %v; want x-gatehouse-tier removed", rm)
	}
	if out[0].GetModeOverride().GetRequestBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("header-only route asked for a body: %v", out[0].GetModeOverride())
	}
	set := map[string]string{}
	for _, h := range out[1].GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		set[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	if set["x-request-id"] != "r-1" || set["x-frame-options"] != "DENY" {
		t.Errorf("response set %v", set)
	}
}

func TestProtocolOverGRPC(t *testing.T) {
	c := client(t, serve(t, routes))
	// Truncated: Envoy half-closes after the request headers (the client
	// went away). The stream ends cleanly.
	out, err := exchange(ctx(t), c, request("headers", "GET", "/h", ""))
	if err != nil || len(out) != 1 {
		t.Errorf("truncated stream = %d answers, %v; want 1, nil", len(out), err)
	}
	// Out of order: a request body after the response headers.
	msgs := append(request("headers", "GET", "/h", ""), response("200", "")[0],
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{EndOfStream: true}}})
	if _, err := exchange(ctx(t), c, msgs); status.Code(err) != codes.InvalidArgument {
		t.Errorf("out-of-order stream = %v; want InvalidArgument", err)
	}
}

func TestIdempotencyAcrossReplicas(t *testing.T) {
	redisCfg := redisSection(testenv.RedisAddr(t), testenv.KeyPrefix(t))
	a := client(t, serve(t, redisCfg+routes))
	b := client(t, serve(t, redisCfg+routes))
	key := []string{"idempotency-key", "order-1", "authorization", "Bearer t"}
	req := request("pay-closed", "POST", "/pay", `{"amount":5}`, key...)

	// Replica A runs the request and stores its response.
	out, err := exchange(ctx(t), a, append(req, response("201", `{"id":1,"card":{"cvc":"123"}}`)...))
	if err != nil || len(out) != 4 {
		t.Fatalf("first request = %d answers, %v", len(out), err)
	}
	// Replica B replays it.
	out, err = exchange(ctx(t), b, req)
	if err != nil {
		t.Fatal(err)
	}
	code, _ := immediate(t, out)
	ir := out[len(out)-1].GetImmediateResponse()
	if code != 201 || string(ir.GetBody()) != `{"id":1,"card":{"cvc":"[REDACTED]"}}` {
		t.Errorf("replay on the other replica = %d %s", code, ir.GetBody())
	}
	// Same key, other payload, on B: 422.
	if out, err := exchange(ctx(t), b, request("pay-closed", "POST", "/pay", `{"amount":6}`, key...)); err != nil {
		t.Fatal(err)
	} else if code, p := immediate(t, out); code != 422 || p["type"] != "urn:gatehouse:problem:idempotency-key-reused" {
		t.Errorf("other payload = %d %v; want 422", code, p)
	}

	// In flight on A (no response yet), retried on B: 409.
	key2 := []string{"idempotency-key", "order-2"}
	st, err := a.Process(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range request("pay-closed", "POST", "/pay", `{}`, key2...) {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	out, err = exchange(ctx(t), b, request("pay-closed", "POST", "/pay", `{}`, key2...))
	if code, _ := immediate(t, out); err != nil || code != 409 {
		t.Errorf("retry while in flight on the other replica = %d, %v; want 409", code, err)
	}
	// The first request is reset (client gone) after A let it go on: the
	// upstream may have run it, so A keeps the key held in Redis and the
	// retry on B still gets 409 ...
	cancelled := time.Now()
	st.CloseSend()
	for {
		if _, err := st.Recv(); err != nil {
			break
		}
	}
	out, err = exchange(ctx(t), b, request("pay-closed", "POST", "/pay", `{}`, key2...))
	if code, _ := immediate(t, out); (err != nil || code != 409) && time.Since(cancelled) < 2*time.Second {
		t.Errorf("retry after a reset past forwarding = %d, %v; want 409 until lockTimeout", code, err)
	}
	// ... until lockTimeout (2s) frees it, and the retry runs.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = exchange(ctx(t), b, request("pay-closed", "POST", "/pay", `{}`, key2...))
		if err == nil && len(out) == 2 && out[1].GetRequestBody() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retry after the first request ended = %v, %v; want it to run", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisDown(t *testing.T) {
	r := testenv.StartRedis(t)
	c := client(t, serve(t, redisSection(r.Addr(), "gh:")+routes))
	run := func(route, path, key string) ([]*extprocv3.ProcessingResponse, error) {
		return exchange(ctx(t), c, request(route, "POST", path, `{}`, "idempotency-key", key))
	}
	if out, err := run("pay-closed", "/pay", "k0"); err != nil || out[len(out)-1].GetRequestBody() == nil {
		t.Fatalf("with redis up = %v, %v", out, err)
	}
	r.Stop()
	out, err := run("pay-closed", "/pay", "k1")
	if code, p := immediate(t, out); err != nil || code != 503 || p["type"] != "urn:gatehouse:problem:idempotency-unavailable" {
		t.Errorf("fail-closed route with redis down = %d %v, %v; want 503", code, p, err)
	}
	if out, err := run("pay-open", "/open", "k1"); err != nil || len(out) != 2 || out[1].GetRequestBody() == nil {
		t.Errorf("fail-open route with redis down = %v, %v; want it to go on", out, err)
	}
	r.Start()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := run("pay-closed", "/pay", "k2")
		if err == nil && len(out) == 2 && out[1].GetRequestBody() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after redis came back = %v, %v", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMessageTimeout points Redis at a listener that accepts and never
// answers: the request must not wait past extproc.messageTimeout (Envoy
// would have given up) and is answered by the failure mode instead.
func TestMessageTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-accepted
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	c := client(t, serve(t, strings.Replace(redisSection(lis.Addr().String(), "gh:"), "readTimeout: 200ms", "readTimeout: 30s", 1)+routes))
	out, err := exchange(ctx(t), c, request("pay-closed", "POST", "/pay", `{}`, "idempotency-key", "k"))
	if code, _ := immediate(t, out); err != nil || code != 503 {
		t.Errorf("store that never answers = %d, %v; want 503 (fail closed within messageTimeout)", code, err)
	}
	out, err = exchange(ctx(t), c, request("pay-open", "POST", "/open", `{}`, "idempotency-key", "k"))
	if err != nil || len(out) != 2 || out[1].GetRequestBody() == nil {
		t.Errorf("fail-open route with a store that never answers = %v, %v; want it to go on", out, err)
	}
}
