package extproc

import (
	"context"
	"fmt"
	"net/http"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/extproc/openapi"
)

// requestBodyPhase collects the request body (echoing or withholding
// chunks as the mode requires) and, once whole or over the route's limit,
// runs the request processors that need it.
type requestBodyPhase struct{}

func (requestBodyPhase) answer(ctx context.Context, s *stream, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	b := req.GetRequestBody()
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
				Body: body, BodyChecked: checked && r.oaBody, JSON: r.json,
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
	if s.idem.key == "" {
		return nil
	}
	if !checked {
		// Without the whole body there is no fingerprint: the request
		// goes on without idempotency, counted.
		r.m.idempotency("too_large")
		s.idem.key = ""
		return nil
	}
	var resp *extprocv3.ProcessingResponse
	s.timed(procIdempotency, func() { resp = s.claim(ctx, body) })
	return resp
}
