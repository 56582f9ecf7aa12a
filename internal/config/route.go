package config

// Route is declared once and read by every component: xds turns Match and
// the inline RouteAction into an Envoy route named ID; authz, ratelimit and
// extproc look their part up by ID (carried by Envoy, see internal/contract)
// or, for a hand-written Envoy config without ids, by matching host, path
// and method the same way Envoy does (internal/routematch).
type Route struct {
	// ID is the stable route id: lower-case letters, digits, '.', '_', '-'.
	// It is the Envoy route name and the key every component uses.
	ID string `yaml:"id"`
	// Match selects the requests of the route.
	Match Match `yaml:"match"`
	// RouteAction (cluster, redirect, timeouts, retries, header edits) is
	// written inline in the route; see xds.go.
	RouteAction `yaml:",inline"`
	// Authz is the route's access policy. Without one, ext_authz stays on
	// for the route and denies all its requests (fail closed), with a
	// warning; write authz: {public: true} to open a route.
	Authz *RouteAuthz `yaml:"authz,omitempty"`
	// RateLimit is the route's quota; nil means no route-level quota.
	RateLimit *RouteRateLimit `yaml:"ratelimit,omitempty"`
	// ExtProc turns on request/response processors for the route.
	ExtProc *RouteExtProc `yaml:"extproc,omitempty"`
	// Budget is the route's cost budget (tokens, bytes, credits per tier
	// per window), reserved and settled by ext_proc; it needs the extproc
	// section.
	Budget *RouteBudget `yaml:"budget,omitempty"`
}

// Match selects requests the way an Envoy route does. Hosts pick the
// virtual host (exact, "*.suffix", "prefix.*" or "*"; most specific wins);
// within it routes are tried in config order and the first match wins.
type Match struct {
	// Hosts are the :authority values the route serves; empty means any.
	Hosts []string `yaml:"hosts,omitempty"`
	// Exactly one of Prefix, Path and Regex (Prefix "/" when none is set).
	Prefix string `yaml:"prefix,omitempty"`
	// Path is an exact path, compared without the query string.
	Path string `yaml:"path,omitempty"`
	// Regex is an RE2 expression that must match the whole path (without
	// the query string).
	Regex Regex `yaml:"regex,omitempty"`
	// Methods restricts the HTTP methods; empty means any.
	Methods []string `yaml:"methods,omitempty"`
	// Headers must all match.
	Headers []HeaderMatch `yaml:"headers,omitempty"`
	// Query parameters must all match.
	Query []QueryMatch `yaml:"query,omitempty"`
	// CaseInsensitive makes Prefix and Path compare without case.
	CaseInsensitive bool `yaml:"caseInsensitive,omitempty"`
}

// HeaderMatch matches one request header. Exactly one of Exact, Prefix,
// Regex or Present is set.
type HeaderMatch struct {
	// Name is the header name (lower-case; pseudo-headers such as :method allowed).
	Name string `yaml:"name"`
	// Exact is the whole value.
	Exact string `yaml:"exact,omitempty"`
	// Prefix is the start of the value.
	Prefix string `yaml:"prefix,omitempty"`
	// Regex is an RE2 expression matching the whole value.
	Regex Regex `yaml:"regex,omitempty"`
	// Present matches on presence (true) or absence (false) alone.
	Present *bool `yaml:"present,omitempty"`
	// Invert negates the match.
	Invert bool `yaml:"invert,omitempty"`
}

// QueryMatch matches one query parameter. Exactly one of Exact, Prefix,
// Regex or Present is set.
type QueryMatch struct {
	// Name is the query parameter name.
	Name string `yaml:"name"`
	// Exact is the whole (decoded) value of the first occurrence.
	Exact string `yaml:"exact,omitempty"`
	// Prefix is the start of the value.
	Prefix string `yaml:"prefix,omitempty"`
	// Regex is an RE2 expression matching the whole value.
	Regex Regex `yaml:"regex,omitempty"`
	// Present matches on presence (true) or absence (false) alone.
	Present *bool `yaml:"present,omitempty"`
}
