package extproc

import (
	"bytes"
	"compress/gzip"
	"context"
	"strconv"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/internal/component"
)

const spec = `
openapi: 3.0.3
info: {title: Orders, version: "1"}
servers: [{url: "https://api.example.com/v1"}]
paths:
  /orders:
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [sku, qty]
              additionalProperties: false
              properties:
                sku: {type: string}
                qty: {type: integer, minimum: 1}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {type: object, required: [id], properties: {id: {type: integer}}}
  /orders/{id}:
    get:
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
`

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pre)
}

var streamConfig = `
extproc:
  maxBodySize: 1KiB
routes:
  - id: plain
    match: {prefix: /plain}
  - id: hygiene
    match: {prefix: /h}
    extproc:
      hygiene: {internalHeaders: [x-internal-*]}
  - id: orders
    match: {hosts: [api.example.com], prefix: /v1}
    extproc:
      hygiene: {}
      openapi:
        validateResponses: true
        spec: |
` + indent(spec, "          ") + `
      idempotency: {}
  - id: redact
    match: {prefix: /r}
    extproc:
      redact: {paths: [$.secret]}
  - id: redact-skip
    match: {prefix: /rs}
    extproc:
      redact: {}
      onLargeBody: skip
`

func streamServer(t testing.TB) *Server {
	s, _ := testServer(t, testConfig(t, streamConfig), component.Deps{})
	return s
}

func TestNoProcessors(t *testing.T) {
	s := streamServer(t)
	for _, route := range []string{"plain", "unknown", ""} {
		got := mustExchange(t, s, requestHeaders(route, true, buffered, ":authority", "x", ":path", "/plain", ":method", "GET"))
		want := &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
			ModeOverride: &extprocfilterv3.ProcessingMode{
				RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP,
				RequestTrailerMode: extprocfilterv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
			},
		}
		if diff := cmp.Diff([]*extprocv3.ProcessingResponse{want}, got, protocmp.Transform()); diff != "" {
			t.Errorf("route %q: answer mismatch (-want +got):\n%s", route, diff)
		}
	}
}

func TestRouteLookup(t *testing.T) {
	s := streamServer(t)
	rt := s.rt.Load()
	hs := []hygiene.Header{{Name: ":authority", Value: "api.example.com:443"}, {Name: ":path", Value: "/v1/orders"}, {Name: ":method", Value: "POST"}}
	for _, tc := range []struct {
		attr, meta string
		hs         []hygiene.Header
		want, src  string
	}{
		{attr: "redact", hs: hs, want: "redact", src: "attribute"},
		{meta: "redact", hs: hs, want: "redact", src: "metadata"},
		{hs: hs, want: "orders", src: "match"},
		{attr: "gone", hs: hs, want: "orders", src: "match"},
		{attr: "gone", want: noRoute, src: "unknown_id"},
		{hs: []hygiene.Header{{Name: ":path", Value: "/elsewhere"}}, want: noRoute, src: "none"},
	} {
		r, src := rt.lookup(tc.attr, tc.meta, tc.hs)
		if r.id != tc.want || src != tc.src {
			t.Errorf("lookup(%q, %q) = %s via %s; want %s via %s", tc.attr, tc.meta, r.id, src, tc.want, tc.src)
		}
	}
}

func TestHygiene(t *testing.T) {
	s := streamServer(t)
	got := mustExchange(t, s,
		requestHeaders("hygiene", true, buffered, ":authority", "x", ":path", "/h", ":method", "GET",
			"x-gatehouse-tier", "gold", "x-gatehouse-subject", "root", "x-internal-debug", "1", "traceparent", "bogus"),
		responseHeaders(false, ":status", "200", "server", "nginx", "x-powered-by", "php", "content-type", "text/plain"),
	)
	if len(got) != 2 {
		t.Fatalf("got %d answers; want 2", len(got))
	}
	m := mut(got[0])
	if diff := cmp.Diff([]string{"x-gatehouse-tier", "x-gatehouse-subject", "x-internal-debug"}, m.GetRemoveHeaders()); diff != "" {
		t.Errorf("request headers removed mismatch (-want +got):\n%s", diff)
	}
	set := setHeaders(m)
	rid, tp := set["x-request-id"], set["traceparent"]
	if !hygiene.ValidRequestID(rid) || !hygiene.ValidTraceparent(tp) {
		t.Errorf("request set %v; want a fresh x-request-id and traceparent", set)
	}
	if mo := got[0].GetModeOverride(); mo.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND || mo.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_NONE || mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("mode override %v; want response headers only", mo)
	}
	rm := mut(got[1])
	rset := setHeaders(rm)
	if rset["x-request-id"] != rid || rset["traceparent"] != tp || rset["x-content-type-options"] != "nosniff" || rset["strict-transport-security"] == "" {
		t.Errorf("response set %v; want the request's ids echoed and security headers", rset)
	}
	if diff := cmp.Diff([]string{"server", "x-powered-by"}, rm.GetRemoveHeaders()); diff != "" {
		t.Errorf("response headers removed mismatch (-want +got):\n%s", diff)
	}
}

func TestContractViolation(t *testing.T) {
	s := streamServer(t)
	hdrs := func() *extprocv3.ProcessingRequest {
		return requestHeaders("", false, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST",
			"content-type", "application/json", "x-request-id", "req-1")
	}
	got := mustExchange(t, s, hdrs(), requestBody(`{"sku":"a","qty":0,"x":1}`, true))
	if len(got) != 2 {
		t.Fatalf("got %d answers; want 2", len(got))
	}
	if mo := got[0].GetModeOverride(); mo.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED {
		t.Errorf("mode override %v; want the request body buffered", mo)
	}
	code, p := problemOf(t, got[1])
	if code != 400 || p.Type != problemContract || p.RequestID != "req-1" || len(p.Errors) != 2 {
		t.Errorf("answer = %d %+v; want 400 contract-violation with 2 errors", code, p)
	}
	if set := setHeaders(got[1].GetImmediateResponse().GetHeaders()); set["x-content-type-options"] != "nosniff" || set["x-request-id"] != "req-1" {
		t.Errorf("problem headers %v; want the route's hygiene headers", set)
	}
	// A valid request passes, and its response is validated report-only.
	got = mustExchange(t, s, hdrs(), requestBody(`{"sku":"a","qty":2}`, true),
		responseHeaders(false, ":status", "201", "content-type", "application/json"),
		responseBody(`{"id":"not-a-number"}`, true))
	if len(got) != 4 || got[1].GetRequestBody() == nil || got[3].GetResponseBody() == nil {
		t.Fatalf("answers %v; want the request and its response to go on", got)
	}
}

func TestContractWithoutBody(t *testing.T) {
	s := streamServer(t)
	got := mustExchange(t, s, requestHeaders("orders", true, buffered, ":authority", "api.example.com", ":path", "/v1/orders/abc", ":method", "GET"))
	code, p := problemOf(t, got[0])
	if code != 400 || len(p.Errors) != 1 || p.Errors[0].In != "path" || p.Errors[0].Name != "id" {
		t.Errorf("answer = %d %+v; want 400 for path parameter id", code, p)
	}
	got = mustExchange(t, s, requestHeaders("orders", true, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST"))
	if code, p := problemOf(t, got[0]); code != 400 || p.Errors[0].In != "body" {
		t.Errorf("POST without a body = %d %+v; want 400 body required", code, p)
	}
}

func TestRedaction(t *testing.T) {
	s := streamServer(t)
	body := `{"secret":"s3cr3t","email":"jane@example.com","ok":1}`
	got := mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json; charset=utf-8", "content-length", "52"),
		responseBody(body, true))
	if len(got) != 3 {
		t.Fatalf("got %d answers", len(got))
	}
	if set := setHeaders(mut(got[0])); set["accept-encoding"] != "identity" {
		t.Errorf("request set %v; want accept-encoding: identity", set)
	}
	b, ok := bodyOf(got[2])
	want := `{"secret":"[REDACTED]","email":"[REDACTED:email]","ok":1}`
	if !ok || b != want {
		t.Errorf("body = %q; want %q", b, want)
	}
	if cl := setHeaders(mut(got[2]))["content-length"]; cl != strconv.Itoa(len(want)) {
		t.Errorf("content-length = %q; want %d", cl, len(want))
	}

	// Not JSON: untouched, and Envoy is told not to buffer it.
	got = mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "text/html"),
		responseBody("<p>jane@example.com</p>", true))
	if mo := got[1].GetModeOverride(); mo == nil || mo.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("mode override %v; want the response body not sent", mo)
	}
	if _, ok := bodyOf(got[2]); ok {
		t.Errorf("a text/html body was changed")
	}

	// gzip: decoded, redacted, sent on uncompressed.
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(body))
	zw.Close()
	got = mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json", "content-encoding", "gzip"),
		responseBody(zb.String(), true))
	if !cmp.Equal(mut(got[1]).GetRemoveHeaders(), []string{"content-encoding"}) {
		t.Errorf("gzip response: removed %v; want content-encoding", mut(got[1]).GetRemoveHeaders())
	}
	if b, _ := bodyOf(got[2]); b != want {
		t.Errorf("gzip body = %q; want %q", b, want)
	}

	// Other encodings cannot be inspected: refused (onLargeBody reject).
	got = mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json", "content-encoding", "br"))
	if code, p := problemOf(t, got[1]); code != 502 || p.Type != problemUninspected {
		t.Errorf("br response = %d %+v; want 502", code, p)
	}
}

func TestBodyLimits(t *testing.T) {
	s := streamServer(t)
	big := `{"pad":"` + strings.Repeat("x", 2000) + `"}`
	// Request over the limit on a reject route: 413.
	got := mustExchange(t, s,
		requestHeaders("orders", false, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST", "content-type", "application/json"),
		requestBody(big, true))
	if code, p := problemOf(t, got[1]); code != 413 || p.Type != problemTooLarge {
		t.Errorf("large request = %d %+v; want 413", code, p)
	}
	// Response over the limit on a redaction route that rejects: 502.
	got = mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json"),
		responseBody(big, true))
	if code, _ := problemOf(t, got[2]); code != 502 {
		t.Errorf("large response on a reject route = %d; want 502", code)
	}
	// ... and on one that skips: through untouched, counted.
	partial := [2]extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL, extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL}
	s2, reg := testServer(t, testConfig(t, streamConfig), component.Deps{})
	got = mustExchange(t, s2,
		requestHeaders("redact-skip", true, partial, ":path", "/rs", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json"),
		responseBody(`{"email":"jane@example.com","pad":"`, false))
	if _, changed := bodyOf(got[2]); changed || got[2].GetResponseBody() == nil {
		t.Errorf("partial response body changed: %v", got[2])
	}
	if n := counter(t, reg, "gatehouse_extproc_bodies_total", "route", "redact-skip", "reason", "over_limit", "action", "skipped"); n != 1 {
		t.Errorf("bodies_total{over_limit,skipped} = %v; want 1", n)
	}
}

func TestStreamedBodies(t *testing.T) {
	s := streamServer(t)
	streamed := [2]extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_STREAMED, extprocfilterv3.ProcessingMode_STREAMED}
	st := s.newStream()
	defer st.finish(nil)
	ans := func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		t.Helper()
		r, err := st.handle(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ans(requestHeaders("redact", true, streamed, ":path", "/r", ":method", "GET"))
	// mode_override asked for BUFFERED; this Envoy ignores it and streams.
	st.resp.mode = extprocfilterv3.ProcessingMode_STREAMED
	ans(responseHeaders(false, ":status", "200", "content-type", "application/json"))
	if b, ok := bodyOf(ans(responseBody(`{"e":"jane@exa`, false))); !ok || b != "" {
		t.Errorf("first chunk: %q, %v; want it withheld (cleared)", b, ok)
	}
	b, ok := bodyOf(ans(responseBody(`mple.com"}`, true)))
	if !ok || b != `{"e":"[REDACTED:email]"}` {
		t.Errorf("last chunk = %q; want the whole redacted body", b)
	}
}

func TestProtocolErrors(t *testing.T) {
	s := streamServer(t)
	hdr := requestHeaders("orders", false, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST")
	for _, tc := range []struct {
		name string
		msgs []*extprocv3.ProcessingRequest
	}{
		{"headers twice", []*extprocv3.ProcessingRequest{hdr, hdr}},
		{"request body after response headers", []*extprocv3.ProcessingRequest{
			requestHeaders("plain", true, buffered), responseHeaders(false, ":status", "200"), requestBody("x", true)}},
		{"request body after end of stream", []*extprocv3.ProcessingRequest{requestHeaders("plain", true, buffered), requestBody("x", true)}},
		{"response body after its end", []*extprocv3.ProcessingRequest{
			requestHeaders("plain", true, buffered), responseHeaders(true, ":status", "204"), responseBody("x", true)}},
		{"unknown message", []*extprocv3.ProcessingRequest{{Request: &extprocv3.ProcessingRequest_RequestHeaders{}}, {Request: nil, ObservabilityMode: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exchange(t, s, tc.msgs...)
			if tc.name == "unknown message" {
				if err != nil {
					t.Errorf("a message with no request set = %v; want it ignored", err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("exchange = %v; want InvalidArgument", err)
			}
		})
	}
}

func TestTrailersAndObservability(t *testing.T) {
	s := streamServer(t)
	got := mustExchange(t, s,
		requestHeaders("hygiene", false, buffered, ":path", "/h", ":method", "POST"),
		requestBody("abc", false),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
		responseHeaders(false, ":status", "200"),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}},
	)
	kinds := []string{}
	for _, r := range got {
		kinds = append(kinds, respKind(r))
	}
	if diff := cmp.Diff([]string{"request_headers", "request_body", "request_trailers", "response_headers", "response_trailers"}, kinds); diff != "" {
		t.Errorf("answers mismatch (-want +got):\n%s", diff)
	}
	obs := requestHeaders("hygiene", true, buffered, ":path", "/h")
	obs.ObservabilityMode = true
	if got := mustExchange(t, s, obs); len(got) != 0 {
		t.Errorf("observability mode got %d answers; want none", len(got))
	}
	full := [2]extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED}
	got = mustExchange(t, s, requestHeaders("orders", false, full, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST"), requestBody("chunk", false))
	if sr := got[1].GetRequestBody().GetResponse().GetBodyMutation().GetStreamedResponse(); sr == nil || string(sr.Body) != "chunk" {
		t.Errorf("full duplex chunk answer %v; want it echoed", got[1])
	}
}

func respKind(r *extprocv3.ProcessingResponse) string {
	switch r.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate"
	}
	return "none"
}

func TestResponseBodyNotSent(t *testing.T) {
	s, reg := testServer(t, testConfig(t, streamConfig), component.Deps{})
	mustExchange(t, s,
		requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
		responseHeaders(false, ":status", "200", "content-type", "application/json"))
	if n := counter(t, reg, "gatehouse_extproc_bodies_total", "route", "redact", "direction", "response", "reason", "not_sent"); n != 1 {
		t.Errorf("bodies_total{response,not_sent} = %v; want 1", n)
	}
}
