package config

import "slices"

// AuthzMTLS configures identity from client certificates: the trust
// domains and their bundles, and the server-wide defaults of what a route
// that accepts mTLS verifies and believes (each route may set its own:
// RouteMTLS).
type AuthzMTLS struct {
	// TrustDomains hold the SPIFFE trust bundles certificates are verified
	// against, one per trust domain.
	TrustDomains []TrustDomain `yaml:"trustDomains,omitempty"`
	// VerifyCertificate checks the peer certificate Envoy forwards
	// (include_peer_certificate) against the bundle of its trust domain,
	// and refuses a principal that comes without a certificate. The
	// default of routes that do not set their own.
	VerifyCertificate bool `yaml:"verifyCertificate,omitempty"`
	// XFCC says when x-forwarded-client-cert is believed; absent = never.
	// The default of routes that do not set their own.
	XFCC *XFCC `yaml:"xfcc,omitempty"`
	// Tiers map SPIFFE ids (exact, or a path pattern with *) to tiers.
	Tiers []SPIFFETier `yaml:"tiers,omitempty"`
}

// TrustDomain is a SPIFFE trust domain and its X.509 bundle (CA
// certificates as PEM, or a SPIFFE bundle JSON document).
type TrustDomain struct {
	// Name is the trust domain (example.org).
	Name SPIFFETrustDomain `yaml:"name"`
	// BundleFile is a PEM or SPIFFE bundle file; a change to it reloads
	// the config, as a change to the config file does.
	BundleFile FilePath `yaml:"bundleFile,omitempty"`
	// Bundle is the same, inline.
	Bundle string `yaml:"bundle,omitempty"`
	// ExpiryWarning is how long before the bundle's last authority
	// expires it is reported as expiring (in /readyz and
	// gatehouse_authz_mtls_bundle_state). 0 means the shorter of 7 days
	// and a third of that authority's lifetime, which suits a CA of ten
	// years and one of SPIRE's 24 hours alike.
	ExpiryWarning Duration `yaml:"expiryWarning" default:"0s"`
}

// XFCC trusts x-forwarded-client-cert only from known hops.
type XFCC struct {
	// TrustedProxies are the CIDRs of direct peers allowed to send XFCC.
	TrustedProxies []CIDR `yaml:"trustedProxies,omitempty"`
	// TrustedProxyIDs are SPIFFE ids of direct mTLS peers allowed to send it.
	TrustedProxyIDs []SPIFFEID `yaml:"trustedProxyIDs,omitempty"`
	// Hop picks the element describing the client, counted from the end
	// (1 = the last element, appended by the nearest proxy).
	Hop int `yaml:"hop" default:"1"`
}

// SPIFFETier maps SPIFFE ids to a tier.
type SPIFFETier struct {
	// ID is a SPIFFE id; its path may hold * for one segment.
	ID string `yaml:"id"`
	// Tier is the tier of matching ids.
	Tier string `yaml:"tier"`
}

// RouteMTLS accepts client certificate identities on a route. What it
// leaves unset comes from authz.mtls, so that one route can verify
// strictly without forcing it on every other.
type RouteMTLS struct {
	// VerifyCertificate overrides authz.mtls.verifyCertificate.
	VerifyCertificate *bool `yaml:"verifyCertificate,omitempty"`
	// TrustDomains are the trust domains (of authz.mtls.trustDomains)
	// whose certificates the route accepts, each verified against its own
	// bundle; empty accepts every configured trust domain. Only for a
	// route that verifies certificates.
	TrustDomains []SPIFFETrustDomain `yaml:"trustDomains,omitempty"`
	// XFCC replaces authz.mtls.xfcc for the route: other trusted hops, or
	// disabled: true to believe no x-forwarded-client-cert on it.
	XFCC *RouteXFCC `yaml:"xfcc,omitempty"`
}

// RouteXFCC is a route's own trust of x-forwarded-client-cert.
type RouteXFCC struct {
	// Disabled believes no x-forwarded-client-cert on the route: only the
	// certificate of the direct peer identifies the caller.
	Disabled bool `yaml:"disabled,omitempty"`
	XFCC     `yaml:",inline"`
}

// MTLSPolicy is a route's effective mTLS settings: the route's own where
// it sets them, else authz.mtls's.
type MTLSPolicy struct {
	// VerifyCertificate checks certificates against their trust domain's
	// bundle.
	VerifyCertificate bool
	// TrustDomains are the trust domains accepted; nil accepts every
	// trust domain of authz.mtls.
	TrustDomains []SPIFFETrustDomain
	// XFCC says whom x-forwarded-client-cert is believed from; nil means
	// never.
	XFCC *XFCC
}

// RoutePolicy returns the effective mTLS settings of a route that sets r
// (nil: none of its own). m may be nil: no authz.mtls section.
func (m *AuthzMTLS) RoutePolicy(r *RouteMTLS) MTLSPolicy {
	var p MTLSPolicy
	if m != nil {
		p.VerifyCertificate = m.VerifyCertificate
		p.XFCC = m.XFCC
	}
	if r == nil {
		return p
	}
	if r.VerifyCertificate != nil {
		p.VerifyCertificate = *r.VerifyCertificate
	}
	p.TrustDomains = r.TrustDomains
	if x := r.XFCC; x != nil {
		p.XFCC = nil
		if !x.Disabled {
			p.XFCC = &x.XFCC
		}
	}
	return p
}

// trustDomainNames lists the names of the configured trust domains.
func (m *AuthzMTLS) trustDomainNames() []string {
	var out []string
	if m != nil {
		for _, td := range m.TrustDomains {
			out = append(out, td.Name.String())
		}
	}
	return out
}

// hasTrustDomain reports whether td is configured.
func (m *AuthzMTLS) hasTrustDomain(td SPIFFETrustDomain) bool {
	return slices.Contains(m.trustDomainNames(), td.String())
}
