package extproc

import (
	"context"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/idempotency"
)

// responseHeadersPhase reads the upstream's status and headers: hygiene
// strips and correlates, it decides whether the body will be redacted,
// validated or stored, and tells Envoy to stream a body nothing needs.
type responseHeadersPhase struct{}

func (responseHeadersPhase) answer(ctx context.Context, s *stream, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	h := req.GetResponseHeaders()
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
	if s.idem.held {
		switch {
		case idempotency.Frees(s.status):
			s.release(ctx, "released")
		case !idempotency.Storable(s.status):
			// The request ran (or may have: a 504) and its answer cannot
			// be replayed: the key stays held until lockTimeout, so that
			// a retry does not run it again at once.
			s.idem.held = false
			if s.status == 504 {
				r.m.idempotency("unknown_outcome")
			} else {
				r.m.idempotency("unreplayable")
			}
		default:
			s.idem.rec = &idempotency.Record{Status: s.status}
			for _, h := range hs {
				if idempotency.Replayable(h.Name) && h.Name != hygiene.RequestIDHeader && h.Name != hygiene.TraceparentHeader &&
					(r.hygiene == nil || !r.hygiene.Strips(h.Name)) && !(s.gzipResp && h.Name == "content-encoding") {
					s.idem.rec.Header = append(s.idem.rec.Header, [2]string{h.Name, h.Value})
				}
			}
		}
	}
	s.resp.want = !eos && (s.redactResp || s.validateResp || s.idem.held)
	if eos {
		if resp, _ := s.responseComplete(ctx, nil, true); resp != nil {
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
	return headersResponse(false, common(&m), mo), nil
}
