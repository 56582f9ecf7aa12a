package config

import (
	"strings"
	"time"
)

// maxExpiryWarning bounds a trust domain's expiryWarning: a CA is rarely
// renewed more than a year ahead, and a longer warning never clears.
const maxExpiryWarning = 366 * 24 * time.Hour

func (m *AuthzMTLS) validate(p Path, errs *Errors) {
	tds := map[string]int{}
	for i, td := range m.TrustDomains {
		tp := p.Field("trustDomains").Index(i)
		if td.Name.IsZero() {
			errs.Add(tp.Field("name"), "is required: the trust domain, such as example.org")
		} else if first, dup := tds[td.Name.String()]; dup {
			errs.Add(tp.Field("name"), "duplicate trust domain %q (also trustDomains[%d]); a trust domain has one bundle, list all its CAs in it", td.Name, first)
		}
		tds[td.Name.String()] = i
		if (td.BundleFile == "") == (td.Bundle == "") {
			errs.Add(tp, "set exactly one of bundleFile and bundle")
		}
		if td.ExpiryWarning.D() > maxExpiryWarning {
			errs.Add(tp.Field("expiryWarning"), "%s is out of range; use 0 (the shorter of 7 days and a third of the CA's lifetime) up to 8784h (a year)", td.ExpiryWarning)
		}
	}
	if m.VerifyCertificate && len(m.TrustDomains) == 0 {
		errs.Add(p.Field("verifyCertificate"), "needs at least one of trustDomains to verify against")
	}
	if m.XFCC != nil {
		m.XFCC.validate(p.Field("xfcc"), errs)
	}
	for i, t := range m.Tiers {
		tp := p.Field("tiers").Index(i)
		if !validSPIFFEPattern(t.ID) {
			errs.Add(tp.Field("id"), "%q is not a SPIFFE id or pattern (spiffe://trust.domain/path, * for one segment)", t.ID)
		}
		if !TierPattern.MatchString(t.Tier) {
			errs.Add(tp.Field("tier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", t.Tier)
		}
	}
}

func (x *XFCC) validate(p Path, errs *Errors) {
	if len(x.TrustedProxies) == 0 && len(x.TrustedProxyIDs) == 0 {
		errs.Add(p, "name the hops allowed to send x-forwarded-client-cert in trustedProxies or trustedProxyIDs")
	}
	for i, c := range x.TrustedProxies {
		if c.Prefix().Bits() == 0 {
			errs.Warn(p.Field("trustedProxies").Index(i), "%q trusts every peer: any client can send x-forwarded-client-cert and claim any certificate identity; list the proxies in front of gatehouse", c)
		}
	}
	if x.Hop < 1 || x.Hop > 16 {
		errs.Add(p.Field("hop"), "%d is out of range; use 1 (the last element) to 16", x.Hop)
	}
}

// validate checks a route's mTLS settings against authz.mtls (server,
// nil when absent): a route cannot verify without bundles, nor name a
// trust domain that has none.
func (r *RouteMTLS) validate(p Path, server *AuthzMTLS, require *SPIFFEMatch, errs *Errors) {
	eff := server.RoutePolicy(r)
	if r.VerifyCertificate != nil && *r.VerifyCertificate && len(server.trustDomainNames()) == 0 {
		errs.Add(p.Field("verifyCertificate"), "needs authz.mtls.trustDomains to verify against")
	}
	if len(r.TrustDomains) > 0 && !eff.VerifyCertificate {
		errs.Add(p.Field("trustDomains"), "only used by a route that verifies certificates (verifyCertificate: true here or in authz.mtls); to restrict the SPIFFE ids of unverified certificates use require.spiffe")
	}
	seen := map[string]int{}
	for i, td := range r.TrustDomains {
		tp := p.Field("trustDomains").Index(i)
		if first, dup := seen[td.String()]; dup {
			errs.Add(tp, "duplicate trust domain %q (also trustDomains[%d])", td, first)
		}
		seen[td.String()] = i
		if !server.hasTrustDomain(td) {
			names := server.trustDomainNames()
			if len(names) == 0 {
				errs.Add(tp, "unknown trust domain %q; authz.mtls.trustDomains declares none", td)
			} else {
				errs.Add(tp, "unknown trust domain %q; authz.mtls.trustDomains declares %s", td, strings.Join(names, ", "))
			}
		}
	}
	if require != nil && !require.TrustDomain.IsZero() && len(r.TrustDomains) > 0 {
		if _, ok := seen[require.TrustDomain.String()]; !ok {
			errs.Warn(p.Field("trustDomains"), "require.spiffe.trustDomain %q is not one of them, so no certificate can satisfy both", require.TrustDomain)
		}
	}
	if x := r.XFCC; x != nil {
		xp := p.Field("xfcc")
		switch {
		case x.Disabled && (len(x.TrustedProxies) > 0 || len(x.TrustedProxyIDs) > 0):
			errs.Add(xp.Field("disabled"), "a route that believes no x-forwarded-client-cert names no trusted hops; remove trustedProxies and trustedProxyIDs, or disabled")
		case !x.Disabled:
			x.XFCC.validate(xp, errs)
		}
	}
}
