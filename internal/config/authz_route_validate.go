package config

import (
	"path"
	"slices"
	"strings"
)

func (a *RouteAuthz) validate(p Path, c *Config, errs *Errors) {
	if c.Authz == nil {
		if !a.Public {
			errs.Add(p, "the config has no authz: section, so nothing would enforce this policy (Envoy gets no ext_authz filter); add an authz: section, or write authz: {public: true} to serve the route without authentication")
		}
		return
	}
	az := c.Authz
	methods := 0
	if a.JWT != nil {
		methods++
		if az.JWT == nil {
			errs.Add(p.Field("jwt"), "accepts JWTs but authz.jwt configures no issuer")
		} else {
			for i, n := range a.JWT.Issuers {
				if !slices.ContainsFunc(az.JWT.Issuers, func(is JWTIssuer) bool { return is.Name == n }) {
					errs.Add(p.Field("jwt").Field("issuers").Index(i), "unknown issuer %q; authz.jwt.issuers names %s", n, issuerNames(az.JWT.Issuers))
				}
			}
		}
	}
	if a.APIKey != nil {
		methods++
		if az.APIKeys == nil {
			errs.Add(p.Field("apiKey"), "accepts API keys but authz.apiKeys is not configured")
		}
	}
	if a.MTLS != nil {
		methods++
		a.MTLS.validate(p.Field("mtls"), az.MTLS, a.Require.SPIFFE, errs)
	}
	if a.Webhook != "" {
		methods++
		if az.WebhookByName(a.Webhook) == nil {
			errs.Add(p.Field("webhook"), "unknown webhook source %q", a.Webhook)
		}
	}
	if a.Public {
		if methods > 0 || a.Optional || a.Shadow || !a.Require.empty() || len(a.ClaimHeaders) > 0 || a.StripCredentials || a.FailureMode != "" {
			errs.Add(p.Field("public"), "a public route takes no other authz settings")
		}
		return
	}
	if methods == 0 {
		errs.Add(p, "accepts no credential; set jwt, apiKey, mtls or webhook (or public: true)")
	}
	if a.Mode == ModeAll && a.Optional {
		errs.Add(p.Field("optional"), "cannot be combined with mode: all")
	}
	if a.Webhook != "" && a.Optional {
		errs.Add(p.Field("optional"), "a webhook route cannot accept unsigned requests")
	}
	if a.Webhook != "" && a.FailureMode == FailOpen {
		errs.Add(p.Field("failureMode"), "a webhook route cannot let unverified deliveries through when ext_authz is down; leave it closed")
	}
	if a.DefaultTier != "" && !TierPattern.MatchString(a.DefaultTier) {
		errs.Add(p.Field("defaultTier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", a.DefaultTier)
	}
	rp := p.Field("require")
	for i, m := range a.Require.Claims {
		mp := rp.Field("claims").Index(i)
		if m.Claim == "" {
			errs.Add(mp.Field("claim"), "is required")
		}
		n := 0
		for _, set := range []bool{m.Equals != "", len(m.OneOf) > 0, m.Contains != "", !m.Regex.IsZero()} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs.Add(mp, "set exactly one of equals, oneOf, contains and regex")
		}
	}
	if len(a.Require.Claims) > 0 && a.JWT == nil {
		errs.Add(rp.Field("claims"), "claims come from JWTs, but the route does not accept jwt")
	}
	if s := a.Require.SPIFFE; s != nil {
		sp := rp.Field("spiffe")
		if a.MTLS == nil {
			errs.Add(sp, "SPIFFE ids come from mTLS, but the route does not accept mtls")
		}
		if len(s.IDs) == 0 && s.TrustDomain.IsZero() {
			errs.Add(sp, "set ids, or trustDomain (with optional paths)")
		}
		if len(s.Paths) > 0 && s.TrustDomain.IsZero() {
			errs.Add(sp.Field("paths"), "only used with trustDomain")
		}
		for i, pat := range s.Paths {
			if _, err := path.Match(pat, ""); err != nil || !strings.HasPrefix(pat, "/") {
				errs.Add(sp.Field("paths").Index(i), "%q is not a path pattern such as /ns/prod/sa/*", pat)
			}
		}
	}
	headers := map[string]int{}
	for i, h := range a.ClaimHeaders {
		hp := p.Field("claimHeaders").Index(i)
		if h.Claim == "" {
			errs.Add(hp.Field("claim"), "is required")
		}
		switch {
		case !headerNamePattern.MatchString(h.Header):
			errs.Add(hp.Field("header"), "%q is not a lower-case header name", h.Header)
		case strings.HasPrefix(h.Header, ":") || h.Header == "host" || h.Header == "authorization" || h.Header == "cookie":
			errs.Add(hp.Field("header"), "%q cannot be set from a claim", h.Header)
		case strings.HasPrefix(h.Header, "x-gatehouse-"):
			// Copied after the identity headers, a claim would overwrite
			// (or, when absent, remove) the verified x-gatehouse-tier,
			// -subject, ... that upstreams trust.
			errs.Add(hp.Field("header"), "%q is an identity header: only ext_authz sets it from the verified identity, so a claim cannot", h.Header)
		}
		if first, dup := headers[h.Header]; dup {
			errs.Add(hp.Field("header"), "duplicate header %q (also claimHeaders[%d])", h.Header, first)
		}
		headers[h.Header] = i
	}
	if len(a.ClaimHeaders) > 0 && a.JWT == nil {
		errs.Add(p.Field("claimHeaders"), "claims come from JWTs, but the route does not accept jwt")
	}
}

func (r Requirements) empty() bool {
	return len(r.Scopes) == 0 && len(r.Claims) == 0 && r.SPIFFE == nil && len(r.SourceCIDRs) == 0
}
