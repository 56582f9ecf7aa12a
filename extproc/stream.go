package extproc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/idempotency"
	"github.com/gatehouse/gatehouse/extproc/openapi"
	"github.com/gatehouse/gatehouse/extproc/redact"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// msgKind is the kind of a ProcessingRequest, in the order Envoy sends
// them for one HTTP request.
type msgKind int

const (
	kindRequestHeaders msgKind = iota
	kindRequestBody
	kindRequestTrailers
	kindResponseHeaders
	kindResponseBody
	kindResponseTrailers
	numMsgKinds
)

var kindNames = [numMsgKinds]string{"request_headers", "request_body", "request_trailers", "response_headers", "response_body", "response_trailers"}

func (k msgKind) String() string { return kindNames[k] }

func kindOf(req *extprocv3.ProcessingRequest) (msgKind, bool) {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return kindRequestHeaders, true
	case *extprocv3.ProcessingRequest_RequestBody:
		return kindRequestBody, true
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return kindRequestTrailers, true
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return kindResponseHeaders, true
	case *extprocv3.ProcessingRequest_ResponseBody:
		return kindResponseBody, true
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return kindResponseTrailers, true
	}
	return 0, false
}

// How a stream ended, for gatehouse_extproc_streams_total.
const (
	resultContinued = "continued"
	resultImmediate = "immediate"
	resultError     = "error"
	resultCancelled = "cancelled"
)

// stream is the state of one ext_proc stream (one HTTP request). It
// answers each message in order, synchronously, and holds no goroutine of
// its own: it is driven by Process (server.go) or directly by tests.
type stream struct {
	srv   *Server
	rt    *runtime
	route *route

	started bool
	last    msgKind // kind of the last message; -1 before the first
	done    bool    // an immediate response was sent: nothing more
	result  string

	announced  [2]extprocfilterv3.ProcessingMode_BodySendMode // request, response
	noOverride bool                                           // Envoy ignores mode_override
	req, resp  bodyState

	method, path, authority string
	reqHeaders              []hygiene.Header
	requestID, traceparent  string
	span                    trace.Span

	oaMatch *openapi.Match

	idemKey   string // store key; "" when the request carries none
	idemFP    idempotency.Fingerprint
	idemOwner idempotency.Owner
	idemHeld  bool // this request holds the key (in flight)
	idemRec   *idempotency.Record

	// deadline is when the answer to the current message is due.
	deadline time.Time

	status       int
	respHeaders  []hygiene.Header
	redactResp   bool
	validateResp bool
	gzipResp     bool
	respLength   bool // the response had a content-length
}

func (s *Server) newStream() *stream {
	return &stream{srv: s, rt: s.rt.Load(), last: -1, result: resultContinued}
}

// protocolError ends the stream: Envoy applies its failure_mode_allow.
func (s *stream) protocolError(reason, format string, args ...any) error {
	s.srv.m.protocol.WithLabelValues(reason).Inc()
	s.result = resultError
	return status.Errorf(codes.InvalidArgument, "extproc: "+format, args...)
}

// handle answers one message. A nil response with a nil error means the
// message needs no answer (observability mode, a flow-control-only
// message).
func (s *stream) handle(ctx context.Context, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	kind, ok := kindOf(req)
	if !ok {
		if req.GetRequest() == nil {
			return nil, nil
		}
		return nil, s.protocolError("unknown_message", "unknown message %T", req.GetRequest())
	}
	s.srv.m.msgObs[kind].Inc()
	if s.done {
		return nil, s.protocolError("after_end", "%s after the stream was answered with an immediate response", kind)
	}
	if !s.started {
		s.start(req)
	}
	if err := s.order(kind, req); err != nil {
		return nil, err
	}
	if req.GetObservabilityMode() {
		// Envoy ignores answers and does not wait for them: nothing
		// gatehouse could do here would take effect.
		return nil, nil
	}
	// Only store calls can block; they take their deadline from when the
	// message arrived (deadline), so nothing waits past messageTimeout.
	s.deadline = time.Now().Add(s.rt.timeout)
	mctx := ctx
	switch kind {
	case kindRequestHeaders:
		return s.requestHeaders(mctx, req)
	case kindRequestBody:
		return s.requestBody(mctx, req.GetRequestBody())
	case kindRequestTrailers:
		if s.req.held > 0 {
			return nil, s.protocolError("trailers_after_held_body", "request trailers ended a STREAMED body whose chunks were withheld")
		}
		s.req.ended = true
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case kindResponseHeaders:
		return s.responseHeaders(mctx, req.GetResponseHeaders())
	case kindResponseBody:
		return s.responseBody(mctx, req.GetResponseBody())
	default:
		if s.resp.held > 0 {
			return nil, s.protocolError("trailers_after_held_body", "response trailers ended a STREAMED body whose chunks were withheld")
		}
		s.resp.ended = true
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
}

// start reads what only the first message carries: the body modes Envoy
// uses (protocol_config) and the route.
func (s *stream) start(req *extprocv3.ProcessingRequest) {
	s.started = true
	if pc := req.GetProtocolConfig(); pc != nil {
		s.announced = [2]extprocfilterv3.ProcessingMode_BodySendMode{pc.GetRequestBodyMode(), pc.GetResponseBodyMode()}
		s.noOverride = pc.GetSendBodyWithoutWaitingForHeaderResponse()
	}
	s.req.mode, s.resp.mode = s.announced[0], s.announced[1]
	attr := req.GetAttributes()[contract.ExtProcFilterName].GetFields()[contract.ExtProcRouteAttribute].GetStringValue()
	meta := req.GetMetadataContext().GetFilterMetadata()[contract.RouteMetadataNamespace].GetFields()[contract.RouteMetadataID].GetStringValue()
	var hs []hygiene.Header
	if h := req.GetRequestHeaders(); h != nil {
		hs = toHeaders(h.GetHeaders())
		s.reqHeaders = hs
	}
	var src string
	s.route, src = s.rt.lookup(attr, meta, hs)
	s.srv.m.lookupBy[src].Inc()
}

// order enforces the message order of an HTTP request; a message out of
// order (or after its direction ended) is a protocol error.
func (s *stream) order(k msgKind, req *extprocv3.ProcessingRequest) error {
	ok := false
	switch k {
	case kindRequestHeaders:
		ok = s.last < 0
	case kindRequestBody:
		ok = s.last <= kindRequestBody && !s.req.ended
	case kindRequestTrailers:
		ok = s.last < kindRequestTrailers && !s.req.ended
	case kindResponseHeaders:
		ok = s.last < kindResponseHeaders
	case kindResponseBody:
		ok = s.last <= kindResponseBody && !s.resp.ended
	case kindResponseTrailers:
		ok = s.last < kindResponseTrailers && !s.resp.ended
	}
	if !ok {
		prev := "none"
		if s.last >= 0 {
			prev = s.last.String()
		}
		return s.protocolError("out_of_order", "%s out of order (after %s)", k, prev)
	}
	s.last = k
	return nil
}

// timed runs f and records how long the processor took.
func (s *stream) timed(proc string, f func()) {
	t0 := time.Now()
	f()
	s.srv.m.procObs[proc].Observe(time.Since(t0).Seconds())
}

func (s *stream) requestHeaders(ctx context.Context, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	h := req.GetRequestHeaders()
	r := s.route
	eos := h.GetEndOfStream()
	s.req.ended = eos
	hs := s.reqHeaders
	s.method, _ = headerValue(hs, ":method")
	s.path, _ = headerValue(hs, ":path")
	s.authority, _ = headerValue(hs, ":authority")
	s.requestID, _ = headerValue(hs, hygiene.RequestIDHeader)
	if !r.processors() {
		return headersResponse(true, nil, s.modeOverride(false, false, false)), nil
	}
	if s.srv.deps.Tracing.Enabled() {
		_, s.span = s.srv.deps.Tracing.StartFromHeaders(ctx, "gatehouse.extproc", carrier(hs))
		s.span.SetAttributes(attribute.String("gatehouse.route", r.id))
	}
	var m mutation
	if r.hygiene != nil {
		s.timed(procHygiene, func() {
			res := r.hygiene.Request(hs, s.newTraceparent)
			for _, n := range res.Remove {
				m.removeHeader(n)
			}
			m.setAll(res.Set)
			hs = without(hs, res.Remove)
			s.requestID, s.traceparent = res.RequestID, res.Traceparent
			if len(res.Remove) > 0 || len(res.Set) > 0 {
				r.m.result(procHygiene, "mutated")
			} else {
				r.m.result(procHygiene, "passed")
			}
		})
		s.reqHeaders = hs
	}
	if r.redactor != nil {
		// Ask for an uncompressed response: redaction reads bodies as
		// they are. (No accept-encoding would mean "anything".)
		m.setHeader("accept-encoding", "identity")
	}
	if r.idem != nil && r.idem.applies(s.method) {
		if resp := s.idempotencyKey(hs); resp != nil {
			return resp, nil
		}
	}
	s.req.want = !eos && (r.contract != nil && r.oaBody || s.idemKey != "")
	respWant := r.redactor != nil || s.idemKey != "" || (r.contract != nil && r.oaResp)
	respHeaders := r.hygiene != nil || respWant
	mo := s.modeOverride(s.req.want, respHeaders, respWant)
	if !s.req.want {
		// No body is coming, or none is needed: everything the request
		// processors check is here now.
		if resp := s.requestComplete(ctx, nil, eos); resp != nil {
			return resp, nil
		}
	}
	return headersResponse(true, common(&m, nil, false), mo), nil
}

// newTraceparent makes the traceparent of a request that had none: the
// span gatehouse started for it when tracing is on (so that the upstream's
// spans hang below it), else random ids.
func (s *stream) newTraceparent() string {
	if s.span != nil {
		if sc := s.span.SpanContext(); sc.IsValid() {
			return hygiene.FormatTraceparent(sc.TraceID(), sc.SpanID(), sc.IsSampled())
		}
	}
	return hygiene.NewTraceparent()
}

// idempotencyKey reads and checks the request's key, for a method the
// route applies keys to.
func (s *stream) idempotencyKey(hs []hygiene.Header) *extprocv3.ProcessingResponse {
	p, r := s.route.idem, s.route
	key, ok := headerValue(hs, p.header)
	switch {
	case !ok && p.required:
		r.m.idempotency("missing_key")
		return s.problem(problem{Type: problemKeyMissing, Title: "Idempotency key required", Status: 400,
			Detail: fmt.Sprintf("%s requests to this API need an %s header.", s.method, http.CanonicalHeaderKey(p.header))})
	case !ok:
		return nil
	case !idempotency.ValidKey(key):
		r.m.idempotency("invalid_key")
		return s.problem(problem{Type: problemKeyInvalid, Title: "Invalid idempotency key", Status: 400,
			Detail: "An idempotency key is 1 to 255 visible ASCII characters."})
	}
	scope := make([]string, len(p.scope))
	for i, n := range p.scope {
		scope[i], _ = headerValue(hs, n)
	}
	s.idemKey = idempotency.StoreKey(r.id, scope, key)
	return nil
}

// modeOverride is the processing mode this request needs, sent with the
// request headers answer so that Envoy buffers bodies only when a
// processor needs them. A mode Envoy announced as FULL_DUPLEX_STREAMED is
// kept: it cannot be switched per request.
func (s *stream) modeOverride(reqBody, respHeaders, respBody bool) *extprocfilterv3.ProcessingMode {
	if s.noOverride {
		return nil
	}
	r := s.route
	mo := &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
	if respHeaders {
		mo.ResponseHeaderMode = extprocfilterv3.ProcessingMode_SEND
	}
	if reqBody {
		mo.RequestBodyMode = r.needs.RequestBody.Envoy()
	}
	if respBody {
		mo.ResponseBodyMode = r.needs.ResponseBody.Envoy()
	}
	for i, m := range []*extprocfilterv3.ProcessingMode_BodySendMode{&mo.RequestBodyMode, &mo.ResponseBodyMode} {
		if s.announced[i] == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
			*m = s.announced[i]
		}
	}
	s.req.mode, s.resp.mode = mo.RequestBodyMode, mo.ResponseBodyMode
	return mo
}

func headersResponse(request bool, c *extprocv3.CommonResponse, mo *extprocfilterv3.ProcessingMode) *extprocv3.ProcessingResponse {
	hr := &extprocv3.HeadersResponse{Response: c}
	if request {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: hr}, ModeOverride: mo}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hr}, ModeOverride: mo}
}

func (s *stream) requestBody(ctx context.Context, b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error) {
	if b.GetEndOfStream() {
		s.req.ended = true
	}
	st, data := s.req.add(b, s.route.limit)
	switch st {
	case stepEcho:
		return echo(true, b), nil
	case stepHold:
		return bodyResponse(true, clearBody()), nil
	case stepOver:
		s.route.m.body("request", "over_limit", action(s.route.reject))
		if s.route.reject {
			return s.problem(problem{Type: problemTooLarge, Title: "Request body too large", Status: 413,
				Detail: fmt.Sprintf("This API accepts request bodies of at most %d bytes.", s.route.limit)}), nil
		}
		if resp := s.requestComplete(ctx, nil, false); resp != nil {
			return resp, nil
		}
		if data != nil {
			return bodyResponse(true, replaceBody(data)), nil
		}
		return bodyResponse(true, nil), nil
	case stepReady:
		if resp := s.requestComplete(ctx, data, true); resp != nil {
			return resp, nil
		}
		if s.req.withheld {
			return bodyResponse(true, replaceBody(data)), nil
		}
	}
	return bodyResponse(true, nil), nil
}

func action(reject bool) string {
	if reject {
		return "rejected"
	}
	return "skipped"
}

// requestComplete runs the request processors that need the whole request:
// contract validation and the idempotency claim. checked says whether body
// is the whole body (false: it was too large or not sent, and body checks
// are skipped). A non-nil answer ends the request.
func (s *stream) requestComplete(ctx context.Context, body []byte, checked bool) *extprocv3.ProcessingResponse {
	s.req.complete = true
	r := s.route
	if r.contract != nil {
		var resp *extprocv3.ProcessingResponse
		s.timed(procOpenAPI, func() {
			hdr := make(http.Header, len(s.reqHeaders))
			for _, h := range s.reqHeaders {
				if h.Name != "" && h.Name[0] != ':' {
					hdr[http.CanonicalHeaderKey(h.Name)] = append(hdr[http.CanonicalHeaderKey(h.Name)], h.Value)
				}
			}
			m, vs := r.contract.ValidateRequest(ctx, openapi.Request{
				Method: s.method, Path: s.path, Authority: s.authority, Header: hdr,
				Body: body, BodyChecked: checked && r.oaBody,
			})
			s.oaMatch = m
			if len(vs) == 0 {
				r.m.result(procOpenAPI, "passed")
				return
			}
			r.m.result(procOpenAPI, "rejected")
			r.m.reqViolations.Inc()
			s.srv.log.Debug("request breaks the API contract", "route", r.id, "request_id", s.requestID, "violations", len(vs), "first", vs[0].Detail)
			resp = s.problem(problem{Type: problemContract, Title: "Request does not match the API contract", Status: 400,
				Detail: fmt.Sprintf("%d problem(s) found; see errors.", len(vs)), Errors: vs})
		})
		if resp != nil {
			return resp
		}
	}
	if s.idemKey == "" {
		return nil
	}
	if !checked {
		// Without the whole body there is no fingerprint: the request
		// goes on without idempotency, counted.
		r.m.idempotency("too_large")
		s.idemKey = ""
		return nil
	}
	var resp *extprocv3.ProcessingResponse
	s.timed(procIdempotency, func() { resp = s.claim(ctx, body) })
	return resp
}

// claim asks the store for the request's key.
func (s *stream) claim(ctx context.Context, body []byte) *extprocv3.ProcessingResponse {
	r, p := s.route, s.route.idem
	s.idemFP = idempotency.NewFingerprint(s.method, s.path, body)
	s.idemOwner = idempotency.NewOwner()
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	out, rec, err := s.srv.store.Begin(ctx, s.idemKey, s.idemFP, s.idemOwner, p.lock)
	if err != nil {
		return s.storeFailed(err)
	}
	r.m.idempotency(out.String())
	switch out {
	case idempotency.Acquired:
		s.idemHeld = true
		return nil
	case idempotency.Replay:
		return s.replay(rec)
	case idempotency.InFlight:
		return s.problem(problem{Type: problemKeyInFlight, Title: "Request with this idempotency key in progress", Status: 409,
			Detail: "A request with the same idempotency key is still being processed; retry later."})
	default:
		return s.problem(problem{Type: problemKeyReused, Title: "Idempotency key reused", Status: 422,
			Detail: "This idempotency key was used for a different request; use a new key for a new request."})
	}
}

// storeFailed applies the route's failure mode to a store error.
func (s *stream) storeFailed(err error) *extprocv3.ProcessingResponse {
	r := s.route
	s.idemKey = ""
	if r.idem.failOpen {
		r.m.idempotency("store_error_open")
		s.srv.log.Warn("idempotency store unavailable; request goes on without idempotency (failureMode open)", "route", r.id, "err", err)
		return nil
	}
	r.m.idempotency("store_error_closed")
	s.srv.log.Warn("idempotency store unavailable; request refused (failureMode closed)", "route", r.id, "err", err)
	return s.problem(problem{Type: problemStoreFailure, Title: "Idempotency unavailable", Status: 503,
		Detail: "Idempotency keys cannot be checked right now; retry shortly."})
}

// replay answers a retry with the stored response.
func (s *stream) replay(rec *idempotency.Record) *extprocv3.ProcessingResponse {
	var m mutation
	// The first value of a name replaces what Envoy's local reply has (its
	// content-type); later ones are added, or a response with two
	// set-cookie headers would be replayed with one.
	seen := make(map[string]bool, len(rec.Header))
	for _, h := range rec.Header {
		if seen[h[0]] {
			m.addHeader(h[0], h[1])
			continue
		}
		seen[h[0]] = true
		m.setHeader(h[0], h[1])
	}
	m.setHeader("idempotent-replayed", "true")
	s.finalHeaders(&m)
	return s.immediate(rec.Status, &m, rec.Body, "gatehouse_idempotent_replay")
}

func (s *stream) responseHeaders(ctx context.Context, h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
	r := s.route
	if s.req.want && !s.req.complete {
		// Envoy never sent the body gatehouse asked for (mode_override
		// not allowed, or a mode it cannot honour).
		r.m.body("request", "not_sent", "skipped")
		if resp := s.requestComplete(ctx, nil, false); resp != nil {
			return resp, nil
		}
	}
	eos := h.GetEndOfStream()
	s.resp.ended = eos
	hs := toHeaders(h.GetHeaders())
	s.status = statusOf(hs)
	s.respHeaders = hs
	if !r.processors() {
		return headersResponse(false, nil, nil), nil
	}
	var m mutation
	if r.hygiene != nil {
		s.timed(procHygiene, func() {
			s.correlation(&m)
			for _, h := range hs {
				if r.hygiene.Strips(h.Name) {
					m.removeHeader(h.Name)
				}
			}
		})
	}
	ct, _ := headerValue(hs, "content-type")
	_, s.respLength = headerValue(hs, "content-length")
	if r.redactor != nil && isJSON(ct) && !eos {
		ce, _ := headerValue(hs, "content-encoding")
		switch encoding(ce) {
		case "identity":
			s.redactResp = true
		case "gzip":
			// Decoded and sent on uncompressed; the header goes now, since
			// only a BUFFERED body answer could still change headers.
			s.redactResp, s.gzipResp = true, true
			m.removeHeader("content-encoding")
		default:
			r.m.body("response", "uninspectable", action(r.reject))
			if r.reject {
				return s.problem(problem{Type: problemUninspected, Title: "Response cannot be inspected", Status: 502,
					Detail: "The upstream answered in a content encoding gatehouse cannot inspect."}), nil
			}
		}
	}
	s.validateResp = r.contract != nil && r.oaResp && s.oaMatch != nil
	if s.idemHeld {
		if !idempotency.Storable(s.status) {
			s.release(ctx, "released")
		} else {
			s.idemRec = &idempotency.Record{Status: s.status}
			for _, h := range hs {
				if idempotency.Replayable(h.Name) && h.Name != hygiene.RequestIDHeader && h.Name != hygiene.TraceparentHeader &&
					(r.hygiene == nil || !r.hygiene.Strips(h.Name)) && !(s.gzipResp && h.Name == "content-encoding") {
					s.idemRec.Header = append(s.idemRec.Header, [2]string{h.Name, h.Value})
				}
			}
		}
	}
	s.resp.want = !eos && (s.redactResp || s.validateResp || s.idemHeld)
	if eos {
		if resp, _, _ := s.responseComplete(ctx, nil, true); resp != nil {
			return resp, nil
		}
	}
	var mo *extprocfilterv3.ProcessingMode
	if !s.resp.want && s.resp.mode != extprocfilterv3.ProcessingMode_NONE && !eos && !s.noOverride &&
		s.resp.mode != extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		// This response needs no body processing after all (not JSON,
		// not stored): let Envoy stream it instead of buffering it.
		mo = &extprocfilterv3.ProcessingMode{
			RequestHeaderMode: extprocfilterv3.ProcessingMode_SEND, ResponseHeaderMode: extprocfilterv3.ProcessingMode_SEND,
			RequestTrailerMode: extprocfilterv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		}
		s.resp.mode = extprocfilterv3.ProcessingMode_NONE
	}
	return headersResponse(false, common(&m, nil, false), mo), nil
}

func (s *stream) responseBody(ctx context.Context, b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error) {
	if b.GetEndOfStream() {
		s.resp.ended = true
	}
	r := s.route
	st, data := s.resp.add(b, r.limit)
	switch st {
	case stepEcho:
		return echo(false, b), nil
	case stepHold:
		return bodyResponse(false, clearBody()), nil
	case stepOver:
		if s.redactResp {
			r.m.body("response", "over_limit", action(r.reject))
			if r.reject || s.gzipResp {
				return s.problem(problem{Type: problemUninspected, Title: "Response cannot be inspected", Status: 502,
					Detail: "The upstream response is larger than this API's inspection limit."}), nil
			}
		} else {
			r.m.body("response", "over_limit", "skipped")
		}
		if resp, _, _ := s.responseComplete(ctx, nil, false); resp != nil {
			return resp, nil
		}
		if data != nil {
			return bodyResponse(false, replaceBody(data)), nil
		}
		return bodyResponse(false, nil), nil
	case stepReady:
		resp, out, m := s.responseComplete(ctx, data, true)
		if resp != nil {
			return resp, nil
		}
		changed := out != nil
		if !changed && s.resp.withheld {
			out = data
		}
		if out == nil {
			return bodyResponse(false, nil), nil
		}
		c := replaceBody(out)
		if changed && s.respLength {
			// BUFFERED with response headers sent: Envoy kept the
			// content-length and it must match the new body.
			m.setHeader("content-length", strconv.Itoa(len(out)))
		}
		c.HeaderMutation = m.proto()
		return bodyResponse(false, c), nil
	}
	return bodyResponse(false, nil), nil
}

// responseComplete runs the response processors on the whole body (nil
// and checked false when it was too large): report-only validation,
// redaction, then storing it for idempotency replays. It returns an
// immediate answer, or the new body (nil when unchanged) and header
// changes for the body answer.
func (s *stream) responseComplete(ctx context.Context, body []byte, checked bool) (*extprocv3.ProcessingResponse, []byte, mutation) {
	s.resp.complete = true
	r := s.route
	var m mutation
	plain := body
	if s.gzipResp && checked && len(body) > 0 {
		dec, err := gunzip(body, r.limit)
		if err != nil {
			r.m.body("response", "uninspectable", "rejected")
			s.release(ctx, "released")
			// The content-encoding header is already gone: a body that
			// cannot be decoded cannot be sent on as it is.
			return s.problem(problem{Type: problemUninspected, Title: "Response cannot be inspected", Status: 502,
				Detail: "The upstream's gzip response could not be decoded within this API's inspection limit."}), nil, m
		}
		plain = dec
	}
	if s.validateResp {
		s.timed(procOpenAPI, func() {
			hdr := http.Header{}
			for _, h := range s.respHeaders {
				if h.Name != "" && h.Name[0] != ':' {
					hdr.Add(h.Name, h.Value)
				}
			}
			vs := r.contract.ValidateResponse(ctx, s.oaMatch, s.status, hdr, plain, checked)
			if len(vs) == 0 {
				return
			}
			r.m.respViolations.Inc()
			r.m.result(procOpenAPI, "reported")
			if s.srv.logAllowed(r) {
				s.srv.log.Warn("response breaks the API contract (report-only)", "route", r.id, "request_id", s.requestID,
					"status", s.status, "violations", len(vs), "first_in", vs[0].In, "first", vs[0].Detail)
			}
		})
	}
	var out []byte
	if s.redactResp && checked {
		s.timed(procRedact, func() {
			red, counts, err := r.redactor.Redact(plain)
			switch {
			case errors.Is(err, redact.ErrNotJSON):
				r.m.body("response", "not_json", "skipped")
				r.m.result(procRedact, "skipped")
			case counts.Total() > 0:
				for k, n := range counts {
					if n > 0 {
						r.m.redacted[k].Add(float64(n))
					}
				}
				r.m.result(procRedact, "mutated")
				out = red
			default:
				r.m.result(procRedact, "passed")
			}
		})
	}
	if s.gzipResp && out == nil && checked {
		out = plain
		if out == nil {
			out = []byte{}
		}
	}
	if s.idemHeld {
		if !checked {
			s.release(ctx, "too_large")
		} else {
			final := body
			if out != nil {
				final = out
			}
			s.timed(procIdempotency, func() { s.store(ctx, final) })
		}
	}
	return nil, out, m
}

// store completes the request's key with its response.
func (s *stream) store(ctx context.Context, body []byte) {
	r := s.route
	s.idemHeld = false
	s.idemRec.Body = body
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	ok, err := s.srv.store.Complete(ctx, s.idemKey, s.idemFP, s.idemOwner, s.idemRec, r.idem.ttl)
	switch {
	case err != nil:
		r.m.idempotency("store_error")
		s.srv.log.Warn("idempotency record not stored; a retry will run the request again", "route", r.id, "err", err)
	case !ok:
		// The lock expired (the request ran longer than lockTimeout) and a
		// retry may have claimed the key since.
		r.m.idempotency("lost")
	default:
		r.m.idempotency("stored")
	}
}

// release frees the key the request holds so that a retry runs.
func (s *stream) release(ctx context.Context, reason string) {
	if !s.idemHeld {
		return
	}
	s.idemHeld = false
	r := s.route
	r.m.idempotency(reason)
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	if err := s.srv.store.Release(ctx, s.idemKey, s.idemFP, s.idemOwner); err != nil {
		s.srv.log.Warn("idempotency key not released; retries get 409 until lockTimeout", "route", r.id, "err", err)
	}
}

// finish ends the stream: a key still held (the request never got a
// response: cancelled, reset, failed upstream) is released, the span ends
// and the outcome is counted.
func (s *stream) finish(err error) {
	if s.idemHeld {
		// The stream's context is gone; release on a fresh one, bounded.
		s.deadline = time.Now().Add(s.rt.timeout)
		s.release(context.Background(), "released")
	}
	if s.resp.want && !s.resp.complete && err == nil && s.route != nil && s.route.m != nil {
		// Gatehouse asked for the response body and Envoy never sent it
		// (mode_override not allowed?): nothing was redacted or stored.
		s.route.m.body("response", "not_sent", "skipped")
		if s.redactResp && s.srv.logAllowed(s.route) {
			s.srv.log.Warn("response body never sent to ext_proc, so it was not redacted; allow_mode_override or a BUFFERED response_body_mode is needed on this route", "route", s.route.id)
		}
	}
	res := s.result
	if err != nil && res != resultError {
		res = resultCancelled
		if status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
			res = resultError
		}
	}
	if s.span != nil {
		s.span.SetAttributes(attribute.String("gatehouse.extproc.result", res))
		s.span.End()
	}
	if s.route == nil || s.route.m == nil {
		return
	}
	switch res {
	case resultImmediate:
		s.route.m.immediate.Inc()
	case resultError:
		s.route.m.errored.Inc()
	case resultCancelled:
		s.route.m.cancelled.Inc()
	default:
		s.route.m.continued.Inc()
	}
}

// without returns hs less the named headers.
func without(hs []hygiene.Header, names []string) []hygiene.Header {
	if len(names) == 0 {
		return hs
	}
	out := make([]hygiene.Header, 0, len(hs))
	for _, h := range hs {
		drop := false
		for _, n := range names {
			if h.Name == n {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, h)
		}
	}
	return out
}

// carrier reads trace context from request headers for the propagator.
type carrier []hygiene.Header

func (c carrier) Get(key string) string {
	v, _ := headerValue(c, key)
	return v
}

func (c carrier) Set(string, string) {}

func (c carrier) Keys() []string {
	out := make([]string, len(c))
	for i, h := range c {
		out[i] = h.Name
	}
	return out
}
