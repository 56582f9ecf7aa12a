package extproc

import (
	"encoding/json"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/openapi"
)

// Headers as Envoy sends them to ext_proc: key plus raw_value (value on
// older Envoys).
func toHeaders(m *corev3.HeaderMap) []hygiene.Header {
	if m == nil {
		return nil
	}
	out := make([]hygiene.Header, 0, len(m.Headers))
	for _, h := range m.Headers {
		v := h.Value
		if len(h.RawValue) > 0 {
			v = string(h.RawValue)
		}
		out = append(out, hygiene.Header{Name: h.Key, Value: v})
	}
	return out
}

// mutation collects header changes for one answer.
type mutation struct {
	set    []*corev3.HeaderValueOption
	remove []string
}

func (m *mutation) setHeader(k, v string) {
	m.set = append(m.set, &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	})
}

// addHeader adds a further value of a header already set by this
// mutation (set-cookie, link, vary …) instead of overwriting it.
func (m *mutation) addHeader(k, v string) {
	m.set = append(m.set, &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	})
}

func (m *mutation) setAll(hs []hygiene.Header) {
	for _, h := range hs {
		m.setHeader(h.Name, h.Value)
	}
}

func (m *mutation) removeHeader(k string) { m.remove = append(m.remove, k) }

func (m *mutation) proto() *extprocv3.HeaderMutation {
	if len(m.set) == 0 && len(m.remove) == 0 {
		return nil
	}
	return &extprocv3.HeaderMutation{SetHeaders: m.set, RemoveHeaders: m.remove}
}

// common is the CONTINUE answer carrying m's header changes; nil when
// there are none (the smallest answer). Body replacements are built where
// bodies are answered.
func common(m *mutation) *extprocv3.CommonResponse {
	hm := m.proto()
	if hm == nil {
		return nil
	}
	return &extprocv3.CommonResponse{HeaderMutation: hm}
}

// Problem type URIs (RFC 9457 §3.1.1): stable identifiers a client can
// switch on; they are names, not links.
const (
	problemContract     = "urn:gatehouse:problem:contract-violation"
	problemTooLarge     = "urn:gatehouse:problem:payload-too-large"
	problemUninspected  = "urn:gatehouse:problem:response-not-inspectable"
	problemKeyInvalid   = "urn:gatehouse:problem:idempotency-key-invalid"
	problemKeyMissing   = "urn:gatehouse:problem:idempotency-key-missing"
	problemKeyInFlight  = "urn:gatehouse:problem:idempotency-key-in-use"
	problemKeyReused    = "urn:gatehouse:problem:idempotency-key-reused"
	problemStoreFailure = "urn:gatehouse:problem:idempotency-unavailable"
)

// problem is an RFC 9457 problem details object.
type problem struct {
	Type      string              `json:"type"`
	Title     string              `json:"title"`
	Status    int                 `json:"status"`
	Detail    string              `json:"detail,omitempty"`
	RequestID string              `json:"requestId,omitempty"`
	Errors    []openapi.Violation `json:"errors,omitempty"`
}

// details are the RESPONSE_CODE_DETAILS Envoy logs for each problem.
var details = map[string]string{
	problemContract:     "gatehouse_contract_violation",
	problemTooLarge:     "gatehouse_payload_too_large",
	problemUninspected:  "gatehouse_response_not_inspectable",
	problemKeyInvalid:   "gatehouse_idempotency_key_invalid",
	problemKeyMissing:   "gatehouse_idempotency_key_missing",
	problemKeyInFlight:  "gatehouse_idempotency_key_in_use",
	problemKeyReused:    "gatehouse_idempotency_key_reused",
	problemStoreFailure: "gatehouse_idempotency_unavailable",
}

// immediate answers the client directly with a problem+json body, with
// the route's correlation and security headers.
func (s *stream) problem(p problem) *extprocv3.ProcessingResponse {
	p.RequestID = s.requestID
	body, _ := json.Marshal(p) // plain strings and ints: cannot fail
	var m mutation
	m.setHeader("content-type", "application/problem+json")
	m.setHeader("cache-control", "no-store")
	if p.Status == 503 {
		m.setHeader("retry-after", "1")
	}
	s.finalHeaders(&m)
	return s.immediate(p.Status, &m, body, details[p.Type])
}

// finalHeaders adds the headers every response of the route carries to an
// answer gatehouse makes itself.
func (s *stream) finalHeaders(m *mutation) {
	if s.route.hygiene != nil || s.route.correlate {
		s.correlation(m)
	}
}

// correlation sets the request's ids and the route's security headers.
func (s *stream) correlation(m *mutation) {
	if s.requestID != "" {
		m.setHeader(hygiene.RequestIDHeader, s.requestID)
	}
	if s.traceparent != "" {
		m.setHeader(hygiene.TraceparentHeader, s.traceparent)
	}
	m.set = append(m.set, s.route.security...)
}

func (s *stream) immediate(status int, m *mutation, body []byte, detail string) *extprocv3.ProcessingResponse {
	s.done, s.result = true, resultImmediate
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: m.proto(),
			Body:    body,
			Details: detail,
		},
	}}
}

func statusOf(hs []hygiene.Header) int {
	v, _ := headerValue(hs, ":status")
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 || n > 999 {
		return 0
	}
	return n
}
