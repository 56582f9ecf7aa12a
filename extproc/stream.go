package extproc

import (
	"context"
	"errors"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/openapi"
	"github.com/gatehouse/gatehouse/internal/config"
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

	// stage is the ext_proc filter that opened the stream; streamRoute
	// the route id in the stream's metadata (gRPC clients).
	stage       config.ExtProcStage
	streamRoute string
	// grpc is set for a proxyless gRPC client's stream (gRFC A93): it
	// sends no pseudo-headers and reads header values from value, not
	// raw_value (grpcclient.go).
	grpc bool
	// caller is the identity ext_authz verified (second stage only).
	caller identity

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

	idem idemState

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
	if err := s.order(kind); err != nil {
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
	// A switch of concrete phases rather than a table of the interface:
	// the compiler then sees every call and keeps the stream off the heap
	// (an interface call would make it escape, one allocation per stream).
	switch kind {
	case kindRequestHeaders:
		return requestHeadersPhase{}.answer(ctx, s, req)
	case kindRequestBody:
		return requestBodyPhase{}.answer(ctx, s, req)
	case kindResponseHeaders:
		return responseHeadersPhase{}.answer(ctx, s, req)
	case kindResponseBody:
		return responseBodyPhase{}.answer(ctx, s, req)
	}
	return trailersPhase{request: kind == kindRequestTrailers}.answer(ctx, s, req)
}

// phase answers the messages of one kind; each kind has its phase, in
// its own file. A phase holds no state: what one message leaves for the
// next (the route, the body so far, the idempotency key) is the stream's.
type phase interface {
	answer(ctx context.Context, s *stream, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error)
}

var (
	_ phase = requestHeadersPhase{}
	_ phase = requestBodyPhase{}
	_ phase = responseHeadersPhase{}
	_ phase = responseBodyPhase{}
	_ phase = trailersPhase{}
)

// trailersPhase ends a direction: nothing gatehouse does reads trailers.
type trailersPhase struct{ request bool }

func (p trailersPhase) answer(_ context.Context, s *stream, _ *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if !p.request {
		if s.resp.held > 0 {
			return nil, s.protocolError("trailers_after_held_body", "response trailers ended a STREAMED body whose chunks were withheld")
		}
		s.resp.ended = true
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	if s.req.held > 0 {
		return nil, s.protocolError("trailers_after_held_body", "request trailers ended a STREAMED body whose chunks were withheld")
	}
	s.req.ended = true
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
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
	attrs := req.GetAttributes()
	attr := requestAttribute(attrs, contract.ExtProcRouteAttribute)
	meta := req.GetMetadataContext().GetFilterMetadata()[contract.RouteMetadataNamespace].GetFields()[contract.RouteMetadataID].GetStringValue()
	var hs []hygiene.Header
	if h := req.GetRequestHeaders(); h != nil {
		hs = toHeaders(h.GetHeaders())
	}
	var src string
	if path := requestAttribute(attrs, contract.ExtProcPathAttribute); path != "" && !hasHeader(hs, ":path") {
		// A proxyless gRPC client: its request line is in attributes.
		s.grpc = true
		hs = grpcRequestHeaders(hs, path, requestAttribute(attrs, contract.ExtProcHostAttribute))
		s.route, src = s.rt.lookupIn(s.rt.grpcResolve, hs, s.streamRoute)
		if src == "attribute" {
			src = "stream_metadata"
		}
	} else {
		s.route, src = s.rt.lookup(attr, meta, hs)
	}
	s.reqHeaders = hs
	s.srv.m.lookupBy[src].Inc()
	s.route = s.route.forStage(s.stage)
	if s.stage != config.ExtProcStagePreAuthz {
		s.caller = identityOf(req)
	}
}

// order enforces the message order of an HTTP request; a message out of
// order (or after its direction ended) is a protocol error.
func (s *stream) order(k msgKind) error {
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

// finish ends the stream: a key still held is released when the request
// never went on, and left held (until lockTimeout) when it did; the span
// ends and the outcome is counted.
func (s *stream) finish(err error) {
	switch {
	case s.idem.held && s.idem.forwarded:
		// Reset (or failed) after the request went on: the upstream may
		// have run it, and no response says otherwise. The key stays
		// held until lockTimeout, so that a retry gets 409 rather than
		// a second execution (draft-ietf-httpapi-idempotency-key-header
		// §2.6).
		s.idem.held = false
		s.route.m.idempotency("held")
	case s.idem.held:
		// Ended before the request went on: nothing ran, a retry may.
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

// delivered is called once an answer has reached the transport. After the
// answer that let a request holding an idempotency key go on, the
// upstream may run it whatever happens to this stream: from then on the
// key is only given up for a response that says the request did not run.
func (s *stream) delivered() {
	if s.idem.held {
		s.idem.forwarded = true
	}
}
