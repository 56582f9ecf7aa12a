package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

const budgetConfig = `extproc: {}
routes:
  - id: chat
    match: {prefix: /v1/chat}
    budget:
      name: tokens
      tiers:
        free: [{amount: 1000, per: month, calendar: true}]
        gold: []
      default: [{amount: 100, per: day}]
      reserve: {jsonPath: $.max_tokens, fixed: 200, max: 500}
      cost: {from: json, jsonPath: $.usage.total_tokens}
  - id: hdr
    match: {prefix: /hdr}
    budget:
      name: credits
      unit: credits
      default: [{amount: 50, per: minute}]
      reserve: {header: x-estimate, fixed: 10}
      cost: {from: header, header: x-cost}
`

// budgetCall drives one budget-stage stream and ends it as Process does.
func budgetCall(t *testing.T, s *Server, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	st := &budgetStream{srv: s, rt: s.rt.Load()}
	defer st.finish()
	var out []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		resp, err := st.handle(context.Background(), m)
		if err != nil {
			t.Fatalf("handle: %v", err)
		}
		if resp != nil {
			if err := resp.ValidateAll(); err != nil {
				t.Errorf("answer fails Envoy's validation: %v", err)
			}
			out = append(out, resp)
		}
		if st.done {
			break
		}
	}
	return out
}

// withIdentity adds ext_authz's dynamic metadata as Envoy forwards it.
func withIdentity(req *extprocv3.ProcessingRequest, tier, subject string) *extprocv3.ProcessingRequest {
	req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.AuthzFilterName: {Fields: map[string]*structpb.Value{
		contract.MetaTier: structpb.NewStringValue(tier), contract.MetaSubject: structpb.NewStringValue(subject),
	}}}}
	return req
}

func chatRequest(tier, subject, body string) []*extprocv3.ProcessingRequest {
	return []*extprocv3.ProcessingRequest{
		withIdentity(requestHeaders("chat", false, buffered, ":method", "POST", ":path", "/v1/chat", "x-request-id", "rq"), tier, subject),
		requestBody(body, true),
	}
}

func headerOf(c *extprocv3.CommonResponse, name string) []string {
	var out []string
	for _, h := range c.GetHeaderMutation().GetSetHeaders() {
		if h.GetHeader().GetKey() == name {
			out = append(out, string(h.GetHeader().GetRawValue()))
		}
	}
	return out
}

func immediateHeader(r *extprocv3.ProcessingResponse, name string) string {
	for _, h := range r.GetImmediateResponse().GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == name {
			return string(h.GetHeader().GetRawValue())
		}
	}
	return ""
}

func TestBudgetStage(t *testing.T) {
	s, reg := testServer(t, testConfig(t, budgetConfig), component.Deps{})
	_ = reg
	cost := func(kind string) float64 { return testutil.ToFloat64(s.bm.costs.WithLabelValues("chat", "free", kind)) }

	// 1. A JSON answer: 300 reserved (max_tokens), 120 spent, 180 refunded.
	out := budgetCall(t, s, append(chatRequest("free", "alice", `{"max_tokens":300}`),
		responseHeaders(false, ":status", "200", "content-type", "application/json"),
		responseBody(`{"usage":{"total_tokens":`, false), responseBody(`120}}`, true))...)
	if got := headerOf(out[1].GetRequestBody().GetResponse(), HeaderBudgetRemaining); len(got) != 1 || got[0] != "700" {
		t.Errorf("upstream %s = %v; want [700]", HeaderBudgetRemaining, got)
	}
	rh := out[2].GetResponseHeaders().GetResponse()
	if got := headerOf(rh, headerRateLimit); len(got) != 1 || !strings.HasPrefix(got[0], `"tokens-1moc";r=700;t=`) {
		t.Errorf("RateLimit = %v", got)
	}
	if got := headerOf(rh, headerRateLimitPolicy); len(got) != 1 || got[0] != `"tokens-1moc";q=1000;w=2592000;qu="tokens"` {
		t.Errorf("RateLimit-Policy = %v", got)
	}
	if cost("reserved") != 300 || cost("settled") != 120 || cost("refunded") != 180 {
		t.Errorf("costs reserved %v settled %v refunded %v; want 300, 120, 180", cost("reserved"), cost("settled"), cost("refunded"))
	}

	// 2. A stream: the last usage event is the cost; max_tokens over the
	// cap reserves the cap (500).
	budgetCall(t, s, append(chatRequest("free", "alice", `{"max_tokens":9000,"stream":true}`),
		responseHeaders(false, ":status", "200", "content-type", "text/event-stream"),
		responseBody("data: {\"usage\":null}\n\n", false),
		responseBody("data: {\"usage\":{\"total_tokens\":700}}\n\ndata: [DONE]\n\n", true))...)
	if cost("reserved") != 800 || cost("settled") != 820 || cost("extra") != 200 {
		t.Errorf("after the stream: reserved %v settled %v extra %v; want 800, 820, 200", cost("reserved"), cost("settled"), cost("extra"))
	}

	// 3. Spent 820 of 1000: a reservation of 200 (no max_tokens: fixed)
	// is refused with 429 and the budget's headers, which say what is
	// left (a smaller request still fits).
	out = budgetCall(t, s, chatRequest("free", "alice", `{}`)...)
	ir := out[len(out)-1].GetImmediateResponse()
	if ir.GetStatus().GetCode() != 429 || immediateHeader(out[len(out)-1], HeaderBudgetRemaining) != "180" ||
		!strings.HasPrefix(immediateHeader(out[len(out)-1], headerRateLimit), `"tokens-1moc";r=180;`) || immediateHeader(out[len(out)-1], headerRetryAfter) == "" {
		t.Errorf("exhausted: %v", ir)
	}
	// Another subject has a budget of its own; an unlisted tier the
	// default's (100 a day: the estimate is capped at it).
	out = budgetCall(t, s, chatRequest("free", "bob", `{}`)...)
	if got := headerOf(out[1].GetRequestBody().GetResponse(), HeaderBudgetRemaining); len(got) != 1 || got[0] != "800" {
		t.Errorf("bob: remaining %v; want [800]", got)
	}
	out = budgetCall(t, s, chatRequest("silver", "carol", `{}`)...)
	if got := headerOf(out[1].GetRequestBody().GetResponse(), HeaderBudgetRemaining); len(got) != 1 || got[0] != "0" {
		t.Errorf("carol (default 100, capped estimate 100): remaining %v; want [0]", got)
	}
	// A tier with an empty list is not limited.
	out = budgetCall(t, s, chatRequest("gold", "dave", `{}`)...)
	if len(out) == 0 || out[0].GetRequestHeaders() == nil || len(headerOf(out[0].GetRequestHeaders().GetResponse(), HeaderBudgetRemaining)) != 0 {
		t.Errorf("gold: %v", out)
	}
	if got := testutil.ToFloat64(s.bm.requests.WithLabelValues("chat", "unlimited", "unlimited")); got != 1 {
		t.Errorf("unlimited requests = %v; want 1", got)
	}
}

// TestBudgetRetryAfter: with a minute and a month both spent, a refusal
// says to retry when the month resets, not the minute.
func TestBudgetRetryAfter(t *testing.T) {
	s, _ := testServer(t, testConfig(t, `extproc: {}
routes:
  - id: r
    match: {prefix: /}
    budget:
      name: b
      default: [{amount: 100, per: minute}, {amount: 150, per: month, calendar: true}]
      reserve: {fixed: 100}
      cost: {from: header, header: x-cost}
`), component.Deps{})
	req := func() *extprocv3.ProcessingRequest {
		return requestHeaders("r", true, buffered, ":method", "GET", ":path", "/", "x-gatehouse-subject", "u")
	}
	budgetCall(t, s, req(), responseHeaders(true, ":status", "200", "x-cost", "100"))
	out := budgetCall(t, s, req())
	ra, err := strconv.Atoi(immediateHeader(out[0], headerRetryAfter))
	if out[0].GetImmediateResponse() == nil || err != nil || ra <= 60 {
		t.Fatalf("refusal with the minute and the month spent: Retry-After %q; want until the month resets (over a minute)", immediateHeader(out[0], headerRetryAfter))
	}
}

func TestBudgetSettleRules(t *testing.T) {
	s, _ := testServer(t, testConfig(t, budgetConfig), component.Deps{})
	hdr := func(kv ...string) *extprocv3.ProcessingRequest {
		return requestHeaders("hdr", true, buffered, append([]string{":method", "GET", ":path", "/hdr", "x-gatehouse-tier", "t", "x-gatehouse-subject", "u"}, kv...)...)
	}
	settled := func() float64 { return testutil.ToFloat64(s.bm.costs.WithLabelValues("hdr", "default", "settled")) }
	reserved := func() float64 { return testutil.ToFloat64(s.bm.costs.WithLabelValues("hdr", "default", "reserved")) }
	// The cost header: 7 of an estimate of 20 (the request's header).
	budgetCall(t, s, hdr("x-estimate", "20"), responseHeaders(true, ":status", "200", "x-cost", "7"))
	if reserved() != 20 || settled() != 7 {
		t.Errorf("header cost: reserved %v settled %v; want 20, 7", reserved(), settled())
	}
	// A cost read from a header is settled when the response headers
	// pass, not when Envoy ends the stream after the body (the caller's
	// next request may come first).
	st := &budgetStream{srv: s, rt: s.rt.Load()}
	for _, m := range []*extprocv3.ProcessingRequest{hdr(), responseHeaders(false, ":status", "200", "x-cost", "3")} {
		if _, err := st.handle(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	if settled() != 10 {
		t.Errorf("header cost before the body: settled %v; want 10", settled())
	}
	st.finish()
	if reserved() != 30 || settled() != 10 {
		t.Fatalf("after the stream: reserved %v settled %v; want 30, 10 (settled once)", reserved(), settled())
	}
	// An error without a cost costs nothing.
	budgetCall(t, s, hdr(), responseHeaders(true, ":status", "503"))
	if reserved() != 40 || settled() != 10 {
		t.Errorf("error status: reserved %v settled %v; want 40, 10", reserved(), settled())
	}
	// A request whose body (the estimate's source) Envoy never sent
	// reserves the fixed estimate when the response comes.
	chatReserved := func() float64 { return testutil.ToFloat64(s.bm.costs.WithLabelValues("chat", "free", "reserved")) }
	budgetCall(t, s, withIdentity(requestHeaders("chat", false, buffered, ":method", "POST", ":path", "/v1/chat"), "free", "eve"),
		responseHeaders(true, ":status", "200", "content-type", "application/json"))
	if chatReserved() != 200 {
		t.Errorf("no request body: reserved %v; want the fixed 200", chatReserved())
	}
	// A request that ended before any response (client gone): the
	// reservation is settled at the estimate (cost.unknown: reservation).
	budgetCall(t, s, hdr())
	if reserved() != 50 || settled() != 20 {
		t.Errorf("cut short: reserved %v settled %v; want 50, 20", reserved(), settled())
	}
	if got := testutil.ToFloat64(s.bm.settlements.WithLabelValues("hdr", "settled")); got != 4 {
		t.Errorf("settlements = %v; want 4 (each exactly once)", got)
	}
}

// TestBudgetStageOverGRPC: a stream that names the budget stage in its
// gRPC metadata (as xds has Envoy's budget filter do) is the budget
// stage; the same messages on a stream without it are the first filter's
// processors, which reserve nothing. The stream's end settles.
func TestBudgetStageOverGRPC(t *testing.T) {
	s, _ := testServer(t, testConfig(t, budgetConfig), component.Deps{})
	cc := testenv.GRPC(t, s.Register)
	client := extprocv3.NewExternalProcessorClient(cc)
	run := func(ctx context.Context) []*extprocv3.ProcessingResponse {
		t.Helper()
		st, err := client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []*extprocv3.ProcessingResponse
		for _, m := range append(chatRequest("free", "grpc-user", `{"max_tokens":40}`),
			responseHeaders(false, ":status", "200", "content-type", "application/json"),
			responseBody(`{"usage":{"total_tokens":25}}`, true)) {
			if err := st.Send(m); err != nil {
				t.Fatal(err)
			}
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp)
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last message: %v; want EOF", err)
		}
		return out
	}
	settled := func() float64 { return testutil.ToFloat64(s.bm.costs.WithLabelValues("chat", "free", "settled")) }
	run(context.Background())
	if settled() != 0 {
		t.Fatalf("a stream without the stage metadata settled a budget")
	}
	out := run(metadata.AppendToOutgoingContext(context.Background(), contract.ExtProcStageMetadata, contract.ExtProcStageBudget))
	if got := headerOf(out[1].GetRequestBody().GetResponse(), HeaderBudgetRemaining); len(got) != 1 || got[0] != "960" {
		t.Errorf("remaining = %v; want [960]", got)
	}
	// Settled by the time Envoy has the answer to the last chunk.
	if settled() != 25 {
		t.Errorf("settled %v; want 25", settled())
	}
}

// TestBudgetReload: a reload that changes a window's amount keeps what was
// spent in it (counters are keyed by the window, not the amount).
func TestBudgetReload(t *testing.T) {
	cfg := func(amount int) *config.Config {
		return testConfig(t, fmt.Sprintf(`extproc: {}
routes:
  - id: r
    match: {prefix: /}
    budget:
      name: b
      default: [{amount: %d, per: month, calendar: true}]
      reserve: {fixed: 10}
      cost: {from: header, header: x-cost}
`, amount))
	}
	s, _ := testServer(t, cfg(100), component.Deps{})
	req := requestHeaders("r", true, buffered, ":method", "GET", ":path", "/", "x-gatehouse-subject", "u")
	budgetCall(t, s, req, responseHeaders(true, ":status", "200", "x-cost", "60"))
	commit, err := s.Prepare(cfg(200))
	if err != nil {
		t.Fatal(err)
	}
	commit()
	out := budgetCall(t, s, req)
	if got := headerOf(out[0].GetRequestHeaders().GetResponse(), HeaderBudgetRemaining); len(got) != 1 || got[0] != "130" {
		t.Errorf("after the reload: remaining %v; want [130] (200 - 60 spent - 10 reserved)", got)
	}
}
