package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/sfv"
	"github.com/gatehouse/gatehouse/ratelimit/budget"
)

// How a settlement's cost was found (audit reason, metric label).
const (
	costFromHeader  = "header"
	costFromJSON    = "json"
	costFromSSE     = "sse"
	costFromBytes   = "bytes"
	costUnknown     = "unknown"      // a success whose cost could not be read: by cost.unknown
	costErrorStatus = "error_status" // status >= 400 without a cost: zero
)

// budgetStream is one request's budget (the post-authz budget stage): it
// reserves when the request comes, sets the remaining budget on the way
// up and down, reads the cost as the response passes and settles at its
// end — or, when the stream ends first, with what is known.
type budgetStream struct {
	srv    *Server
	rt     *runtime
	route  string
	p      *budgetPolicy
	tier   *budgetTier
	tierID string
	subj   string
	reqID  string

	key      string
	res      *budget.Reservation
	out      budget.Outcome
	reserved bool // a reservation is held and not yet settled
	settled  bool

	// What the response has told so far.
	status     int
	costKnown  bool
	cost       uint64
	costSource string
	sse        *budget.SSE
	jsonBuf    []byte
	jsonOver   bool
	bytes      uint64
	respEnded  bool
	sawResp    bool
	body       bool // the response body is read (cost from json or bytes)
	reqWaiting bool // the estimate waits for the request body
	deadline   time.Time
	done       bool
	started    bool // the request headers came
}

// stageOf reads the ext_proc stage a stream serves from its gRPC metadata.
func stageOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(contract.ExtProcStageMetadata); len(v) > 0 {
		return v[0]
	}
	return ""
}

// processBudget serves a budget-stage stream.
func (s *Server) processBudget(srv extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := srv.Context()
	st := &budgetStream{srv: s, rt: s.rt.Load()}
	defer st.finish()
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return err
		}
		resp, err := st.handle(ctx, req)
		if err != nil {
			return err
		}
		if resp == nil {
			continue
		}
		if err := srv.Send(resp); err != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "extproc: send: %v", err)
		}
		if st.done {
			return nil
		}
	}
}

// handle answers one message of the budget stage.
func (b *budgetStream) handle(ctx context.Context, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if b.done {
		return nil, status.Error(codes.InvalidArgument, "extproc: message after the budget stage answered with an immediate response")
	}
	if req.GetObservabilityMode() {
		return nil, nil
	}
	b.deadline = time.Now().Add(b.rt.timeout)
	switch r := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if b.started {
			// One request, one reservation: a second set of request
			// headers would reserve again and orphan the first.
			return nil, status.Error(codes.InvalidArgument, "extproc: request headers twice on one budget stream")
		}
		b.started = true
		return b.requestHeaders(ctx, req, r.RequestHeaders), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return b.requestBody(ctx, r.RequestBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return b.responseHeaders(ctx, r.ResponseHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return b.responseBody(ctx, r.ResponseBody), nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		b.respEnded = true
		b.settle(ctx)
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	case nil:
		return nil, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "extproc: unknown message %T", req.Request)
}

// budgetIdentity reads the caller's tier and subject: from ext_authz's dynamic
// metadata when Envoy forwards it, else from the identity headers
// ext_authz set (Envoy strips client-sent ones before ext_authz runs).
func budgetIdentity(req *extprocv3.ProcessingRequest, hs []hygiene.Header) (tier, subject string) {
	if md := req.GetMetadataContext().GetFilterMetadata()[contract.AuthzFilterName]; md != nil {
		tier = md.GetFields()[contract.MetaTier].GetStringValue()
		subject = md.GetFields()[contract.MetaSubject].GetStringValue()
	}
	if tier == "" {
		tier, _ = headerValue(hs, contract.HeaderTier)
	}
	if subject == "" {
		subject, _ = headerValue(hs, contract.HeaderSubject)
	}
	if tier == "" {
		tier = contract.AnonymousTier
	}
	if subject == "" {
		subject = contract.AnonymousTier
	}
	return tier, subject
}

// routeOf finds the route id: the route name attribute (whatever filter
// name Envoy files it under), the route metadata, else host/path matching.
func (b *budgetStream) routeOf(req *extprocv3.ProcessingRequest, hs []hygiene.Header) string {
	var attr string
	for _, a := range req.GetAttributes() {
		if v := a.GetFields()[contract.ExtProcRouteAttribute].GetStringValue(); v != "" {
			attr = v
			break
		}
	}
	meta := req.GetMetadataContext().GetFilterMetadata()[contract.RouteMetadataNamespace].GetFields()[contract.RouteMetadataID].GetStringValue()
	r, _ := b.rt.lookup(attr, meta, hs)
	return r.id
}

func (b *budgetStream) requestHeaders(ctx context.Context, req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	hs := toHeaders(h.GetHeaders())
	b.route = b.routeOf(req, hs)
	b.p = b.rt.budgets[b.route]
	b.reqID, _ = headerValue(hs, hygiene.RequestIDHeader)
	var m mutation
	m.removeHeader(HeaderBudgetRemaining)
	m.removeHeader(HeaderBudgetReserved)
	if b.p == nil {
		// Not a budget route (a hand-written config, or a reload since
		// Envoy's route table): nothing to do for this request.
		return headersResponse(true, common(&m), b.skipRest())
	}
	b.tierID, b.subj = budgetIdentity(req, hs)
	b.tier = b.p.tierOf(b.tierID)
	if b.tier == nil {
		b.srv.bm.request(b.route, "unlimited", "unlimited")
		return headersResponse(true, common(&m), b.skipRest())
	}
	b.key = b.p.key(b.tierID, b.subj)
	if !b.p.reservePath.IsZero() && !h.GetEndOfStream() {
		// The estimate is in the body (Envoy buffers it: the route's
		// processing mode).
		b.reqWaiting = true
		return headersResponse(true, common(&m), nil)
	}
	var declared uint64
	ok := false
	if b.p.reserveHeader != "" {
		if v, found := headerValue(hs, b.p.reserveHeader); found {
			declared, ok = budget.ParseAmount(v)
		}
	}
	if resp := b.reserve(ctx, b.p.estimate(b.tier, declared, ok), &m); resp != nil {
		return resp
	}
	return headersResponse(true, common(&m), nil)
}

func (b *budgetStream) requestBody(ctx context.Context, body *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if !b.reqWaiting {
		return bodyResponse(true, nil)
	}
	b.reqWaiting = false
	var declared uint64
	ok := false
	if int64(len(body.GetBody())) <= b.p.maxBody {
		declared, ok = budget.Lookup(b.p.reservePath, body.GetBody())
	}
	var m mutation
	if resp := b.reserve(ctx, b.p.estimate(b.tier, declared, ok), &m); resp != nil {
		return resp
	}
	c := common(&m)
	return bodyResponse(true, c)
}

// skipRest tells Envoy that nothing more of this request is needed.
func (b *budgetStream) skipRest() *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP,
		RequestTrailerMode: extprocfilterv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

// reserve reserves amount; a non-nil answer refuses the request.
func (b *budgetStream) reserve(ctx context.Context, amount uint64, m *mutation) *extprocv3.ProcessingResponse {
	b.res = &budget.Reservation{Key: b.key, ID: budget.NewID(), Amount: amount, Limits: b.tier.limits, Hold: b.p.hold, OnExpiry: b.p.onExpiry}
	ctx, cancel := context.WithDeadline(ctx, b.deadline)
	defer cancel()
	out, err := b.srv.budgets.Reserve(ctx, b.res)
	if err != nil {
		b.res = nil
		if b.p.failOpen {
			b.srv.bm.request(b.route, b.tier.label, "store_error_open")
			b.srv.log.Warn("budget store unavailable; request goes on unreserved (failureMode open)", "route", b.route, "budget", b.p.name, "err", err)
			return nil
		}
		b.srv.bm.request(b.route, b.tier.label, "store_error_closed")
		b.srv.log.Warn("budget store unavailable; request refused (failureMode closed)", "route", b.route, "budget", b.p.name, "err", err)
		var em mutation
		em.setHeader("content-type", "application/problem+json")
		em.setHeader("cache-control", "no-store")
		em.setHeader(headerRetryAfter, "1")
		return b.immediate(503, &em, problem{Type: problemBudgetUnavailable, Title: "Budget unavailable", Status: 503,
			Detail: "The cost budget of this API cannot be checked right now; retry shortly."})
	}
	b.out = out
	if out.Expired > 0 {
		b.srv.bm.expired(b.route, b.tier.label, out.Expired)
	}
	if !out.Admitted {
		b.res = nil
		b.srv.bm.request(b.route, b.tier.label, "refused")
		var em mutation
		em.setHeader("content-type", "application/problem+json")
		em.setHeader("cache-control", "no-store")
		i := b.rateLimitHeaders(&em)
		// Retry when every window that refused has reset: the latest of
		// them (a spent month outlasts a spent minute).
		reset := out.Windows[i].Reset
		for j, w := range out.Windows {
			if l := b.tier.limits[j]; (w.Remaining(l) < amount || w.Used >= l.Amount) && w.Reset.After(reset) {
				reset = w.Reset
			}
		}
		if ra := ceilSecs(time.Until(reset)); ra > 0 {
			em.setHeader(headerRetryAfter, strconv.FormatInt(ra, 10))
		}
		return b.immediate(429, &em, problem{Type: problemBudgetExhausted, Title: "Budget exhausted", Status: 429,
			Detail: fmt.Sprintf("This request's estimated cost of %d %s does not fit the %s budget %q.", amount, b.p.unit, b.tier.label, b.tier.limits[i].Name)})
	}
	b.reserved = true
	b.srv.bm.request(b.route, b.tier.label, "admitted")
	b.srv.bm.cost(b.route, b.tier.label, "reserved", amount)
	i := b.out.Tightest(b.tier.limits)
	m.setHeader(HeaderBudgetRemaining, strconv.FormatUint(b.out.Windows[i].Remaining(b.tier.limits[i]), 10))
	m.setHeader(HeaderBudgetReserved, strconv.FormatUint(amount, 10))
	return nil
}

// rateLimitHeaders sets RateLimit and RateLimit-Policy of the budget (the
// window with the least room), added beside any the rate limit filter
// sets, and the remaining budget; it returns the window's index. On a
// refusal the remaining budget is what is truly left (a smaller request
// may still fit), not 0.
func (b *budgetStream) rateLimitHeaders(m *mutation) int {
	i := b.out.Tightest(b.tier.limits)
	l, w := b.tier.limits[i], b.out.Windows[i]
	rem := w.Remaining(l)
	m.addHeader(headerRateLimitPolicy, b.tier.policy)
	m.addHeader(headerRateLimit, sfv.String(l.Name)+";r="+strconv.FormatUint(rem, 10)+";t="+strconv.FormatInt(max(0, ceilSecs(time.Until(w.Reset))), 10))
	m.setHeader(HeaderBudgetRemaining, strconv.FormatUint(rem, 10))
	return i
}

func ceilSecs(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

func (b *budgetStream) immediate(code int, m *mutation, p problem) *extprocv3.ProcessingResponse {
	b.done = true
	p.RequestID = b.reqID
	body, _ := json.Marshal(p) // plain strings and ints: cannot fail
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: m.proto(),
			Body:    body,
			Details: budgetDetails[p.Type],
		},
	}}
}

func (b *budgetStream) responseHeaders(ctx context.Context, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	b.sawResp = true
	hs := toHeaders(h.GetHeaders())
	b.status = statusOf(hs)
	var m mutation
	if b.reqWaiting {
		// Envoy never sent the request body the estimate was to be read
		// from: reserve the fixed estimate now rather than let the
		// request go unbudgeted (a refusal replaces the response).
		b.reqWaiting = false
		if resp := b.reserve(ctx, b.p.estimate(b.tier, 0, false), &m); resp != nil {
			return resp
		}
		m = mutation{}
	}
	if !b.reserved {
		return headersResponse(false, nil, nil)
	}
	b.rateLimitHeaders(&m)
	m.removeHeader(HeaderBudgetReserved)
	switch b.p.costFrom {
	case config.CostHeader:
		if v, ok := headerValue(hs, b.p.costHeader); ok {
			b.cost, b.costKnown = budget.ParseAmount(v)
			b.costSource = costFromHeader
		}
	case config.CostJSON:
		ct, _ := headerValue(hs, "content-type")
		mt, _, _ := mime.ParseMediaType(ct)
		switch {
		case mt == "text/event-stream":
			b.sse = budget.NewSSE(b.p.costPath)
			b.body = true
		case isJSON(ct):
			b.body = true
		}
	case config.CostBytes:
		b.body = true
	}
	if h.GetEndOfStream() {
		b.respEnded = true
		b.settle(ctx)
		return headersResponse(false, common(&m), nil)
	}
	var mo *extprocfilterv3.ProcessingMode
	if !b.body {
		// The cost is known now (a header), or nothing more can be
		// learnt of it (a body the budget does not read): settle now,
		// and let the body go by.
		b.settle(ctx)
		mo = &extprocfilterv3.ProcessingMode{
			RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
			RequestTrailerMode: extprocfilterv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		}
	}
	return headersResponse(false, common(&m), mo)
}

// responseBody reads the cost as chunks pass; every chunk goes on
// untouched and at once (an event stream is never held back).
func (b *budgetStream) responseBody(ctx context.Context, body *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if b.reserved && b.body {
		chunk := body.GetBody()
		b.bytes += uint64(len(chunk))
		switch {
		case b.sse != nil:
			b.sse.Write(chunk)
		case b.p.costFrom == config.CostJSON && !b.jsonOver:
			if int64(len(b.jsonBuf)+len(chunk)) > b.p.maxBody {
				b.jsonOver, b.jsonBuf = true, nil
			} else {
				b.jsonBuf = append(b.jsonBuf, chunk...)
			}
		}
	}
	if body.GetEndOfStream() {
		b.respEnded = true
		b.settle(ctx)
	}
	return bodyResponse(false, nil)
}

// finalCost is the cost to settle with, and how it was found. Rules, in
// order: a cost read from the response; an error status (400 and above)
// without one costs nothing; bytes cost what passed; otherwise (a success
// whose cost could not be read, a stream cut short before its usage, a
// request that ended before any response) cost.unknown: the reservation,
// or zero.
func (b *budgetStream) finalCost() (uint64, string) {
	switch {
	case b.costKnown:
		return b.cost, b.costSource
	case b.sse != nil:
		b.sse.End()
		if c, ok := b.sse.Cost(); ok {
			return c, costFromSSE
		}
	case b.p.costFrom == config.CostJSON && b.jsonBuf != nil && b.respEnded:
		if c, ok := budget.Lookup(b.p.costPath, b.jsonBuf); ok {
			return c, costFromJSON
		}
	case b.p.costFrom == config.CostBytes && b.sawResp:
		return min(b.bytes, budget.MaxAmount), costFromBytes
	}
	if b.status >= 400 {
		return 0, costErrorStatus
	}
	if b.p.unknownZero {
		return 0, costUnknown
	}
	return b.res.Amount, costUnknown
}

// settle settles the reservation once, with what is known now. A failed
// call is retried once with the same settle id: the store applies it at
// most once either way.
func (b *budgetStream) settle(ctx context.Context) {
	if !b.reserved || b.settled {
		return
	}
	b.settled = true
	actual, how := b.finalCost()
	s := &budget.Settlement{Key: b.key, ID: b.res.ID, Actual: actual, Hold: b.p.hold}
	var out budget.SettleOutcome
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.rt.timeout)
		out, err = b.srv.budgets.Settle(sctx, s)
		cancel()
		if err == nil || errors.Is(err, budget.ErrInvalid) {
			break
		}
	}
	if err != nil {
		b.srv.bm.settlement(b.route, "error")
		b.srv.log.Warn("budget not settled; the reservation stands until it expires", "route", b.route, "budget", b.p.name, "err", err)
		return
	}
	b.srv.bm.settlement(b.route, out.Status.String())
	if out.Status == budget.Settled || out.Status == budget.Late {
		b.srv.bm.cost(b.route, b.tier.label, "settled", actual)
		switch {
		case out.Delta < 0:
			b.srv.bm.cost(b.route, b.tier.label, "refunded", uint64(-out.Delta))
		case out.Delta > 0:
			b.srv.bm.cost(b.route, b.tier.label, "extra", uint64(out.Delta))
		}
	}
	if b.p.audit && b.srv.deps.Audit != nil {
		b.srv.deps.Audit.Record(audit.Event{
			Time: time.Now(), Kind: audit.KindBudgetSettle, ID: b.res.ID, RequestID: b.reqID, Route: b.route,
			Decision: out.Status.String(), Reason: "cost_" + how, Subject: b.subj, Tier: b.tierID,
			Detail: fmt.Sprintf("budget=%s unit=%s reserved=%d actual=%d delta=%d status=%d", b.p.name, b.p.unit, b.res.Amount, actual, out.Delta, b.status),
		})
	}
}

// finish settles a reservation the stream ended without settling: the
// response never ended (client gone, stream reset, ext_proc stream ended
// early by Envoy), with what is known.
func (b *budgetStream) finish() {
	b.settle(context.Background())
}
