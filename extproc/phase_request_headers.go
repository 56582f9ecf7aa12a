package extproc

import (
	"context"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/attribute"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
)

// requestHeadersPhase reads the request line and headers: it finds what
// the route's processors need (hygiene runs now; contract validation and
// the idempotency claim now or once the body is in) and asks Envoy, in
// the mode override, for exactly the bodies they need.
type requestHeadersPhase struct{}

func (requestHeadersPhase) answer(ctx context.Context, s *stream, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
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
	s.req.want = !eos && (r.contract != nil && r.oaBody || s.idem.key != "")
	respWant := r.redactor != nil || s.idem.key != "" || (r.contract != nil && r.oaResp)
	respHeaders := r.hygiene != nil || respWant
	mo := s.modeOverride(s.req.want, respHeaders, respWant)
	if !s.req.want {
		// No body is coming, or none is needed: everything the request
		// processors check is here now.
		if resp := s.requestComplete(ctx, nil, eos); resp != nil {
			return resp, nil
		}
	}
	return headersResponse(true, common(&m), mo), nil
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
