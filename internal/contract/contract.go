// Package contract is the one definition of what gatehouse's components
// tell each other through Envoy: the route id Envoy carries to each service,
// the identity ext_authz hands on as dynamic metadata and upstream headers,
// and the descriptor keys the rate limit actions build from them.
//
// The writers (xds, which configures Envoy, and authz, which emits the
// identity) and the readers (authz, ratelimit, extproc) import these names
// from here, so the two sides cannot drift apart.
package contract

// Route id, as carried to each service.
const (
	// ContextExtensionRoute is the ext_authz per-route
	// check_settings.context_extensions key whose value is the route id.
	ContextExtensionRoute = "route"

	// ExtProcFilterName is the ext_proc HTTP filter name; Envoy sends the
	// request attributes it was asked for under this key of
	// ProcessingRequest.attributes.
	ExtProcFilterName = "envoy.filters.http.ext_proc"
	// ExtProcRouteAttribute is the request attribute (asked for through
	// the filter's request_attributes) holding the Envoy route name, which
	// xds sets to the route id.
	ExtProcRouteAttribute = "xds.route_name"

	// ExtProcPreAuthzFilterName and ExtProcPostAuthzFilterName name the
	// two ext_proc stages of gatehouse's filter chain: the first runs
	// before ext_authz (header hygiene: what must happen before anyone
	// looks at the request), the second after ext_authz and the rate
	// limit (contract validation, idempotency, redaction: only for
	// callers already let in). Envoy keys a route's per-filter config by
	// these names.
	ExtProcPreAuthzFilterName  = ExtProcFilterName + "." + ExtProcStagePreAuthz
	ExtProcPostAuthzFilterName = ExtProcFilterName + "." + ExtProcStagePostAuthz

	// ExtProcStageMetadata is the gRPC metadata key (the filter's
	// grpc_service.initial_metadata) that tells the ext_proc server which
	// stage opened a stream. A stream without it runs every processor of
	// the route, as one ext_proc filter of a hand-written Envoy config
	// expects.
	ExtProcStageMetadata = "x-gatehouse-extproc-stage"
	// ExtProcStagePreAuthz and ExtProcStagePostAuthz are its values.
	ExtProcStagePreAuthz  = "pre_authz"
	ExtProcStagePostAuthz = "post_authz"
	// ExtProcRouteMetadata is the gRPC metadata key of the ext_proc
	// stream that carries the route id from a proxyless gRPC client: xds
	// sets it in the route's grpc_service override, since the client's
	// filter does not implement the xds.route_name attribute.
	ExtProcRouteMetadata = "x-gatehouse-extproc-route"

	// ExtProcPathAttribute and ExtProcHostAttribute are the request
	// attributes a proxyless gRPC client's ext_proc filter (gRFC A93)
	// offers in place of xds.route_name, which it does not implement: the
	// RPC's method path (/package.Service/Method) and its authority. The
	// ext_proc server matches the route of a gRPC stream by them.
	ExtProcPathAttribute = "request.path"
	ExtProcHostAttribute = "request.host"

	// ExtProcBudgetFilterName is a third ext_proc filter, after the
	// post_authz stage and before the router, that reserves and settles
	// cost budgets (ExtProcStageBudget). It is a filter of its own rather
	// than part of post_authz because it needs another response body mode:
	// the cost is read from a body streamed past unchanged (an event
	// stream is never held back), where redaction and idempotency buffer
	// it; and being closest to the router, it reads the upstream's own
	// response before any processor changes it.
	ExtProcBudgetFilterName = ExtProcFilterName + "." + ExtProcStageBudget
	ExtProcStageBudget      = "budget"

	// RouteMetadataNamespace is the route metadata (filter_metadata)
	// namespace xds writes on every route, holding RouteMetadataID. Access
	// logs and ext_proc metadata_options can forward it.
	RouteMetadataNamespace = "gatehouse"
	// RouteMetadataID is the key of the route id in RouteMetadataNamespace.
	RouteMetadataID = "route_id"
)

// UnknownRoutePolicy is what a component does with a route id Envoy sent
// that the serving config does not have. That happens during a rollout:
// Envoy still holds routes of an older (or newer) config than the
// replica it asks. Each component's answer is decided here, once, and
// applied by internal/routematch's Resolver, so that the three components
// cannot drift into three unwritten answers.
type UnknownRoutePolicy uint8

// Policies for an unknown route id.
const (
	// UnknownRouteRefuse: the request is treated as matching no route,
	// without matching host and path (a route id says Envoy already
	// matched; a second opinion would pick a route Envoy did not).
	UnknownRouteRefuse UnknownRoutePolicy = iota + 1
	// UnknownRouteMatch: fall back to matching host, path and method as
	// Envoy would, as if no id had been sent.
	UnknownRouteMatch
	// UnknownRouteIgnore: the component does nothing for the request:
	// no route, so no rule applies.
	UnknownRouteIgnore
)

// The policy of each component.
const (
	// AuthzUnknownRoute: ext_authz denies (reason no_route), whatever
	// authz.unmatched says: a route unknown here has a policy unknown
	// here, and access control fails closed.
	AuthzUnknownRoute = UnknownRouteRefuse
	// ExtProcUnknownRoute: ext_proc matches the request headers instead.
	// Its processors protect the upstream (hygiene, contract, redaction),
	// and the route the request matches in this config is the best
	// guess of what it is; a request matching nothing passes untouched.
	ExtProcUnknownRoute = UnknownRouteMatch
	// RateLimitUnknownRoute: the rate limit service answers OK for the
	// descriptor, counted (unknown_route) and logged. Its descriptors
	// carry no host or path to match, and a quota is not access control:
	// refusing every request of a route during a rollout would be an
	// outage of the service's making.
	RateLimitUnknownRoute = UnknownRouteIgnore
)

// Identity that ext_authz hands on as dynamic metadata. Envoy stores the
// CheckResponse.dynamic_metadata of the ext_authz filter under the filter's
// name, so the rate limit actions read metadata_key
// {key: AuthzFilterName, path: [{key: MetaTier}]}.
const (
	AuthzFilterName = "envoy.filters.http.ext_authz"
	// AuthzFailOpenFilterName and AuthzFailClosedFilterName name a second
	// ext_authz filter, with the other failure mode than the listener's
	// (xds.services.authzFailureMode), for routes whose authz.failureMode
	// differs. Envoy stores its dynamic metadata under AuthzFilterName all
	// the same (the extension's name, not the filter's; test/envoy proves
	// it), so the rate limit actions read the same namespace everywhere.
	AuthzFailOpenFilterName   = AuthzFilterName + ".fail_open"
	AuthzFailClosedFilterName = AuthzFilterName + ".fail_closed"

	MetaSubject    = "subject"
	MetaTier       = "tier"
	MetaIssuer     = "issuer"
	MetaSPIFFEID   = "spiffe_id"
	MetaAuthMethod = "auth_method"
	MetaScopes     = "scopes"
	MetaDecisionID = "decision_id"
	MetaRoute      = "route"
)

// Identity headers ext_authz sets on the upstream request. They overwrite
// (never append to) whatever the client sent, and extproc's header hygiene
// strips client-sent copies on routes that skip ext_authz, so a client can
// never choose its own identity or tier.
const (
	HeaderSubject    = "x-gatehouse-subject"
	HeaderTier       = "x-gatehouse-tier"
	HeaderIssuer     = "x-gatehouse-issuer"
	HeaderAuthMethod = "x-gatehouse-auth-method"
	HeaderSPIFFEID   = "x-gatehouse-spiffe-id"
	HeaderScopes     = "x-gatehouse-scopes"
	HeaderRoute      = "x-gatehouse-route"

	// HeaderDecisionID goes back to the client (on allow and deny) and
	// into the audit line, so a complaint can be matched to a decision.
	HeaderDecisionID = "x-gatehouse-decision-id"

	// IdentityHeaderPrefix is the prefix of every identity header.
	IdentityHeaderPrefix = "x-gatehouse-"
)

// IdentityHeaders lists the headers a client must never be able to set
// on the way upstream. The decision id is among them although gatehouse
// sends it only to the client: an upstream that logs it must not log one
// the client made up.
var IdentityHeaders = []string{
	HeaderSubject, HeaderTier, HeaderIssuer, HeaderAuthMethod,
	HeaderSPIFFEID, HeaderScopes, HeaderRoute, HeaderDecisionID,
}

// The rate limiter's mark on a request it let through without deciding
// (its store down or too slow, and the rule's failure mode open): Envoy
// adds it to the upstream request (RLS request_headers_to_add), so that
// the upstream can log or meter it. It is not an identity header (the
// route must not remove it after the rate limit filter added it), but a
// client must not send it either: xds strips it first in the filter
// chain, and extproc's hygiene strips every x-gatehouse-* header.
const (
	HeaderRateLimit       = "x-gatehouse-ratelimit"
	RateLimitDegradedOpen = "degraded-open"
)

// Rate limit service (RLS) request shape.
const (
	// RateLimitDomain is the RLS domain of gatehouse's own quotas.
	RateLimitDomain = "gatehouse"

	// DescriptorRoute is the descriptor key (generic_key.descriptor_key)
	// whose value is the route id.
	DescriptorRoute = "route"
	// DescriptorTier holds the caller's verified tier (from MetaTier).
	DescriptorTier = "tier"
	// DescriptorSubject holds the caller's verified subject (MetaSubject).
	DescriptorSubject = "subject"
	// DescriptorFailureMode is appended (open or closed) by the action
	// that gates a descriptor by the caller's tier, where a route's tiers
	// are sent by two rate limit filters of different failure modes. The
	// rate limiter ignores it: its own failure modes decide.
	DescriptorFailureMode = "failure_mode"

	// AnonymousTier is the tier of a request with no verified identity.
	// ext_authz emits it explicitly so that the rate limit action's
	// default_value is never what decides a tier.
	AnonymousTier = "anonymous"
)

// Auth methods, as written in MetaAuthMethod, HeaderAuthMethod and audit.
const (
	AuthMethodJWT     = "jwt"
	AuthMethodMTLS    = "mtls"
	AuthMethodAPIKey  = "apikey"
	AuthMethodWebhook = "webhook"
	AuthMethodNone    = "none"
)

// MaxHeaderValue bounds every value gatehouse copies into an upstream
// header: a verified subject, claim, certificate subject or configured API
// key subject. It equals ratelimit.requests.maxValueBytes' default, since
// the subject also becomes a rate limit descriptor value.
const MaxHeaderValue = 1024

// HeaderSafe reports whether s may be copied into an HTTP header that goes
// upstream: printable ASCII only and at most MaxHeaderValue bytes, so that
// no value can split or bloat headers.
func HeaderSafe(s string) bool {
	if len(s) > MaxHeaderValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ASCIILower lower-cases ASCII letters only, as Envoy's case-insensitive
// path, host and header-name comparisons do (absl's ASCII helpers): a
// Unicode-aware fold would match paths Envoy does not (the Kelvin sign
// folds to "k") and change the byte length of what it folds.
func ASCIILower(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
