package config

import extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

// What the xds translator needs to know of a route's authz, extproc and
// ratelimit parts to wire Envoy's filter chain for it. Each component's
// config file implements its method on Route (authz.go, extproc.go,
// ratelimit.go), so that xds never interprets another component's
// settings itself and the two cannot disagree.

// AuthzNeeds is how Envoy's ext_authz filter must treat a route.
type AuthzNeeds struct {
	// Disabled turns ext_authz off for the route (a public route, or the
	// authz component is not configured).
	Disabled bool
	// RequestBody asks Envoy to send the raw request body
	// (with_request_body + pack_as_bytes), for webhook signatures.
	RequestBody bool
	// MaxRequestBytes bounds the body Envoy buffers for the check.
	MaxRequestBytes uint32
	// AllowPartialMessage lets Envoy send a body larger than
	// MaxRequestBytes truncated instead of answering 413. Signature
	// checks need the whole body, so this is false for them.
	AllowPartialMessage bool
	// FailureMode is what Envoy does when ext_authz cannot answer for
	// the route: the route's authz.failureMode, else
	// xds.services.authzFailureMode.
	FailureMode FailureMode
}

// BodyMode is how Envoy sends a body to ext_proc.
type BodyMode string

// Body modes, as in envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.
const (
	BodyNone            BodyMode = "none"
	BodyBuffered        BodyMode = "buffered"
	BodyBufferedPartial BodyMode = "buffered_partial"
	BodyStreamed        BodyMode = "streamed"
)

// EnumValues implements Enum.
func (BodyMode) EnumValues() []string {
	return []string{"none", "buffered", "buffered_partial", "streamed"}
}

// EnumNoun implements Enum.
func (BodyMode) EnumNoun() string { return "a body mode" }

// Envoy is the mode as Envoy's ext_proc filter names it: what xds writes
// into a route's processing mode and what extproc asks for in a
// mode_override, so that the two always ask for the same mode.
func (m BodyMode) Envoy() extprocfilterv3.ProcessingMode_BodySendMode {
	switch m {
	case BodyBuffered:
		return extprocfilterv3.ProcessingMode_BUFFERED
	case BodyBufferedPartial:
		return extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL
	case BodyStreamed:
		return extprocfilterv3.ProcessingMode_STREAMED
	}
	return extprocfilterv3.ProcessingMode_NONE
}

// ExtProcNeeds is the ext_proc processing mode a route needs: only what
// its processors use, so a route with none costs Envoy nothing and a
// header-only route never buffers a body.
type ExtProcNeeds struct {
	// Disabled turns ext_proc off for the route.
	Disabled         bool
	RequestHeaders   bool
	ResponseHeaders  bool
	RequestBody      BodyMode
	ResponseBody     BodyMode
	RequestTrailers  bool
	ResponseTrailers bool
	// MaxBodyBytes is the largest body the route's processors buffer;
	// Envoy's connection buffer must hold at least this much.
	MaxBodyBytes uint32
	// ResponseHeadersToRemove are response headers the route's processors
	// want gone that Envoy does not let ext_proc remove: the route
	// removes them itself.
	ResponseHeadersToRemove []string
}

// HeaderDescriptor adds a descriptor entry built from a request header.
type HeaderDescriptor struct {
	Header string
	Key    string
}

// RateLimitNeeds is the rate limit action a route needs. When enabled,
// Envoy sends one descriptor of entries route (generic_key), tier and
// subject (from ext_authz dynamic metadata; see internal/contract), then
// HeaderEntries in order.
type RateLimitNeeds struct {
	Enabled       bool
	HeaderEntries []HeaderDescriptor
	// FailureMode is what Envoy should do with a request of the route
	// when the rate limit service cannot answer, for every tier but
	// those in Except, for which it should do the opposite (sorted;
	// contract.AnonymousTier also stands for a request no ext_authz
	// identified). They are the limiter's own failure modes, except that
	// a tier the route does not limit, and every tier of a shadow route,
	// fails open: refusing it would enforce nothing.
	FailureMode FailureMode
	Except      []string
}
