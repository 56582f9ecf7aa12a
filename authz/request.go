package authz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// headerPartialBody is set by Envoy when it sent only the first
// max_request_bytes of the body (allow_partial_message).
const headerPartialBody = "x-envoy-auth-partial-body"

// requestFrom takes what the decision needs from a CheckRequest, once.
// A request without attributes.request.http is not one Envoy's HTTP
// filter sends; it is refused as malformed rather than guessed at.
func requestFrom(cr *authv3.CheckRequest, r *core.Request) core.Code {
	attrs := cr.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return core.RequestMalformed
	}
	r.Headers = h.GetHeaders()
	if hm := h.GetHeaderMap(); len(r.Headers) == 0 && hm != nil {
		// encode_raw_headers: repeated headers arrive one by one; join
		// them with "," as Envoy does in the headers map.
		r.Headers = make(map[string]string, len(hm.GetHeaders()))
		for _, hv := range hm.GetHeaders() {
			k := strings.ToLower(hv.GetKey())
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			if old, ok := r.Headers[k]; ok {
				v = old + "," + v
			}
			r.Headers[k] = v
		}
	}
	if r.Headers == nil {
		r.Headers = map[string]string{}
	}
	r.Method = h.GetMethod()
	r.Host = h.GetHost()
	r.Path = h.GetPath()
	r.Scheme = h.GetScheme()
	// Envoy fills method/host/path from the pseudo-headers; a hand-built
	// request may hold only the headers.
	if r.Method == "" {
		r.Method = r.Headers[":method"]
	}
	if r.Host == "" {
		r.Host = r.Headers[":authority"]
	}
	if r.Path == "" {
		r.Path = r.Headers[":path"]
	}
	if r.Scheme == "" {
		r.Scheme = r.Headers[":scheme"]
	}
	if r.Method == "" || r.Path == "" {
		return core.RequestMalformed
	}
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.Body, r.BodyPresent = raw, true
	} else if b := h.GetBody(); b != "" {
		r.Body, r.BodyPresent = []byte(b), true
	}
	r.PartialBody = r.Headers[headerPartialBody] == "true"
	src := attrs.GetSource()
	r.SourceAddress = src.GetAddress().GetSocketAddress().GetAddress()
	r.SourcePrincipal = src.GetPrincipal()
	r.SourceCertificate = src.GetCertificate()
	r.RouteID = attrs.GetContextExtensions()[contract.ContextExtensionRoute]
	return core.OK
}

// requestID is the request's x-request-id, kept only when it is a short
// printable token: it goes into a JSON body and an audit line.
func requestID(r *core.Request) string {
	id := r.Headers["x-request-id"]
	if len(id) > 128 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return id
}

// carrier lets OpenTelemetry read trace headers from the request.
type carrier map[string]string

func (c carrier) Get(k string) string { return c[strings.ToLower(k)] }
func (c carrier) Set(string, string)  {}
func (c carrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
