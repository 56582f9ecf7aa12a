package authz

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
)

// route is a route's policy compiled for the hot path.
type route struct {
	id       string
	hasAuthz bool
	public   bool
	all      bool // mode: all
	methods  []method
	optional bool
	shadow   bool

	scopes       []string
	scopesJoined string
	claims       []claimMatcher
	spiffe       *spiffeMatcher
	cidrs        []netip.Prefix

	defaultTier  string
	claimHeaders []config.ClaimHeader
	strip        []string // credential headers removed upstream
	// challenges are the WWW-Authenticate challenges of the route's
	// methods, without error attributes.
	bearer, apiKey, signature bool

	counters counters
	// anon is the upstream output of anonymous requests (public,
	// optional, unmatched-allowed, shadow without credential).
	anon atomic.Pointer[upstream]
}

func (e *engine) compileRoute(cr *config.Route) *route {
	rt := &route{id: cr.ID, counters: counters{route: cr.ID}, defaultTier: e.defaultTier}
	a := cr.Authz
	if a == nil {
		return rt
	}
	rt.hasAuthz = true
	rt.public = a.Public
	if a.Public {
		return rt
	}
	rt.all = a.Mode == config.ModeAll
	rt.optional = a.Optional
	rt.shadow = a.Shadow
	rt.methods = e.methodsFor(a)
	if a.DefaultTier != "" {
		rt.defaultTier = a.DefaultTier
	}
	rt.scopes = a.Require.Scopes
	rt.scopesJoined = strings.Join(a.Require.Scopes, " ")
	for _, m := range a.Require.Claims {
		rt.claims = append(rt.claims, claimMatcher{path: strings.Split(m.Claim, "."), m: m})
	}
	if s := a.Require.SPIFFE; s != nil {
		rt.spiffe = &spiffeMatcher{ids: s.IDs, td: s.TrustDomain.String(), paths: s.Paths}
	}
	for _, c := range a.Require.SourceCIDRs {
		rt.cidrs = append(rt.cidrs, c.Prefix())
	}
	rt.claimHeaders = a.ClaimHeaders
	for _, m := range rt.methods {
		switch m.(type) {
		case *jwtMethod:
			rt.bearer = true
		case *apiKeyMethod:
			rt.apiKey = true
		case *webhookMethod:
			rt.signature = true
		}
		if a.StripCredentials {
			for _, h := range m.credentialHeaders() {
				if !slices.Contains(rt.strip, h) {
					rt.strip = append(rt.strip, h)
				}
			}
		}
	}
	return rt
}

// claimMatcher is one required claim condition.
type claimMatcher struct {
	path []string
	m    config.ClaimMatch
}

func (c *claimMatcher) String() string { return strings.Join(c.path, ".") }

// lookupClaim follows a dotted path into nested claim objects.
func lookupClaim(claims map[string]any, path []string) (any, bool) {
	var cur any = claims
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// claimString is a claim value's text: booleans and numbers as JSON
// writes them (a JSON number is decoded as a float64, which fmt would
// print as 1e+06).
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	}
	return "", false
}

func (c *claimMatcher) match(claims map[string]any) bool {
	v, ok := lookupClaim(claims, c.path)
	if !ok {
		return false
	}
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if s, ok := claimString(e); ok && c.matchOne(s, true) {
				return true
			}
		}
		return false
	}
	s, ok := claimString(v)
	return ok && c.matchOne(s, false)
}

// matchOne tests one value; element is true for an element of a list.
func (c *claimMatcher) matchOne(s string, element bool) bool {
	m := &c.m
	switch {
	case m.Equals != "":
		return s == m.Equals
	case len(m.OneOf) > 0:
		return slices.Contains(m.OneOf, s)
	case m.Contains != "":
		if element {
			return s == m.Contains
		}
		return slices.Contains(strings.Fields(s), m.Contains)
	case !m.Regex.IsZero():
		return m.Regex.MatchString(s)
	}
	return false
}

// spiffeMatcher allows SPIFFE ids by exact id, or by trust domain and
// path pattern.
type spiffeMatcher struct {
	ids   []config.SPIFFEID
	td    string
	paths []string
}

func (s *spiffeMatcher) match(id string) bool {
	if id == "" {
		return false
	}
	if slices.Contains(s.ids, config.SPIFFEID(id)) {
		return true
	}
	if s.td == "" {
		return false
	}
	rest, ok := strings.CutPrefix(id, "spiffe://"+s.td)
	if !ok || (rest != "" && rest[0] != '/') {
		return false
	}
	if len(s.paths) == 0 {
		return true
	}
	for _, p := range s.paths {
		if ok, _ := path.Match(p, rest); ok {
			return true
		}
	}
	return false
}

// requirements checks what an authenticated caller must satisfy.
func (rt *route) requirements(id *core.Identity, ex core.Explainer) core.Code {
	for _, s := range rt.scopes {
		if !id.HasScope(s) {
			if ex != nil {
				ex.Step("scope %q is required but not granted (granted: %v)", s, id.Scopes)
			}
			return core.ScopeMissing
		}
	}
	for i := range rt.claims {
		c := &rt.claims[i]
		if id.Claims == nil || !c.match(id.Claims) {
			if ex != nil {
				ex.Step("claim %s does not satisfy %s", c, describeClaim(&c.m))
			}
			return core.ClaimMismatch
		}
	}
	if rt.spiffe != nil && !rt.spiffe.match(id.SPIFFEID) {
		if ex != nil {
			ex.Step("SPIFFE id %q is not allowed on this route", id.SPIFFEID)
		}
		return core.SPIFFENotAllowed
	}
	if len(rt.scopes)+len(rt.claims) > 0 || rt.spiffe != nil {
		if ex != nil {
			ex.Step("requirements met (scopes %v, %d claim condition(s), SPIFFE: %t)", rt.scopes, len(rt.claims), rt.spiffe != nil)
		}
	}
	return core.OK
}

func describeClaim(m *config.ClaimMatch) string {
	switch {
	case m.Equals != "":
		return fmt.Sprintf("equals %q", m.Equals)
	case len(m.OneOf) > 0:
		return fmt.Sprintf("one of %q", m.OneOf)
	case m.Contains != "":
		return fmt.Sprintf("contains %q", m.Contains)
	}
	return fmt.Sprintf("regex %q", m.Regex.String())
}

func (rt *route) sourceAllowed(r *core.Request) bool {
	if len(rt.cidrs) == 0 {
		return true
	}
	a, ok := r.SourceAddr()
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range rt.cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
