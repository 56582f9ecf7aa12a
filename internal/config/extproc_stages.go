package config

// ExtProcStage is one of the two ext_proc filters of gatehouse's filter
// chain. Envoy runs them at two points of a request:
//
//	header_mutation → ext_proc pre_authz → ext_authz → ratelimit → ext_proc post_authz → router
//
// so that what must happen to every request (header hygiene: spoofed
// identity headers stripped, a request id and a traceparent ensured) runs
// before anyone looks at it, and what only a caller already let in may
// reach (the API contract, the idempotency store, redaction of its
// responses) runs after ext_authz and the rate limit.
type ExtProcStage string

// Stages, in filter chain order. ExtProcStageAll is one ext_proc filter
// running every processor (a hand-written Envoy config, and proxyless
// gRPC clients, which have no ext_authz in front of it).
const (
	ExtProcStageAll       ExtProcStage = ""
	ExtProcStagePreAuthz  ExtProcStage = "pre_authz"
	ExtProcStagePostAuthz ExtProcStage = "post_authz"
)

// ExtProcStages are the stages gatehouse pushes, in filter chain order.
var ExtProcStages = []ExtProcStage{ExtProcStagePreAuthz, ExtProcStagePostAuthz}

// ForStage returns the part of e that runs in stage s: hygiene (request
// and response side) before ext_authz, the other processors after it.
// Hygiene's response side stays in the first stage because that filter
// is the outermost on the way back: it also sees the 401/403 of ext_authz
// and the 429 of the rate limit, which then carry the security headers
// and the request's correlation ids like any other response. The result
// shares e's processor settings; nil when e is nil.
func (e *RouteExtProc) ForStage(s ExtProcStage) *RouteExtProc {
	if e == nil || s == ExtProcStageAll {
		return e
	}
	out := *e
	switch s {
	case ExtProcStagePreAuthz:
		out.OpenAPI, out.Redact, out.Idempotency = nil, nil, nil
	case ExtProcStagePostAuthz:
		out.Hygiene = nil
	}
	return &out
}

// ExtProcStageNeeds is what Envoy's ext_proc filter of stage s must send
// for route r: ExtProcNeeds of the processors that run in that stage
// only. A stage with none of the route's processors is Disabled, so a
// route with hygiene alone never opens a post_authz stream, and one with
// OpenAPI alone never opens a pre_authz stream.
func (r *Route) ExtProcStageNeeds(c *Config, s ExtProcStage) ExtProcNeeds {
	staged := *r
	staged.ExtProc = r.ExtProc.ForStage(s)
	return staged.ExtProcNeeds(c)
}
