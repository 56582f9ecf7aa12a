package extproc

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/extproc/redact"
	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// responseBodyPhase collects the response body and, once whole (or over
// the limit), validates, redacts and stores it.
type responseBodyPhase struct{}

func (responseBodyPhase) answer(ctx context.Context, s *stream, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	b := req.GetResponseBody()
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
		if resp, _ := s.responseComplete(ctx, nil, false); resp != nil {
			return resp, nil
		}
		if data != nil {
			return bodyResponse(false, replaceBody(data)), nil
		}
		return bodyResponse(false, nil), nil
	case stepReady:
		resp, out := s.responseComplete(ctx, data, true)
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
		var m mutation
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
// immediate answer, or the new body (nil when unchanged).
func (s *stream) responseComplete(ctx context.Context, body []byte, checked bool) (*extprocv3.ProcessingResponse, []byte) {
	s.resp.complete = true
	r := s.route
	plain := body
	if s.gzipResp && checked && len(body) > 0 {
		dec, err := gunzip(body, r.limit)
		if err != nil {
			r.m.body("response", "uninspectable", "rejected")
			// The upstream ran: the key stays held (finish) until
			// lockTimeout. The content-encoding header is already gone:
			// a body that cannot be decoded cannot be sent on as it is.
			return s.problem(problem{Type: problemUninspected, Title: "Response cannot be inspected", Status: 502,
				Detail: "The upstream's gzip response could not be decoded within this API's inspection limit."}), nil
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
	var refused *extprocv3.ProcessingResponse
	if s.redactResp && checked {
		s.timed(procRedact, func() {
			red, counts, err := r.redactor.Redact(plain)
			switch {
			case errors.Is(err, jsonx.ErrTrailingData), errors.Is(err, jsonx.ErrDuplicateName):
				// JSON its readers may read differently: what one of them
				// reads might be what masking missed.
				reason := "trailing_data"
				detail := "The upstream's JSON response holds data after its JSON text, which clients may read differently."
				if errors.Is(err, jsonx.ErrDuplicateName) {
					reason = "duplicate_names"
					detail = "The upstream's JSON response names a member twice in one object, which clients may read differently."
				}
				r.m.body("response", reason, "rejected")
				r.m.result(procRedact, "rejected")
				refused = s.problem(problem{Type: problemUninspected, Title: "Response cannot be inspected", Status: 502, Detail: detail})
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
	if refused != nil {
		return refused, nil
	}
	if s.gzipResp && out == nil && checked {
		out = plain
		if out == nil {
			out = []byte{}
		}
	}
	if s.idem.held {
		if !checked {
			// Too large to store, but the upstream ran: the key stays
			// held in the store until lockTimeout, so that a retry gets
			// 409 rather than a second execution.
			s.idem.held = false
			r.m.idempotency("too_large")
		} else {
			final := body
			if out != nil {
				final = out
			}
			s.timed(procIdempotency, func() { s.store(ctx, final) })
		}
	}
	return nil, out
}
