// Package mtls turns what Envoy knows of a client certificate into a
// verified identity: the peer's principal (URI SAN) and, with
// include_peer_certificate, the certificate itself (URL-encoded PEM),
// optionally verified against the bundle of its SPIFFE trust domain; or
// the x-forwarded-client-cert header, believed only from trusted hops.
// What is verified, which trust domains are accepted and which hops are
// trusted is decided per route (Trust.Authenticator), the bundles are
// loaded once per config (Trust) and reported as they near expiry.
// SPIFFE ids are parsed and bundles verified with go-spiffe.
package mtls

import (
	"crypto/x509"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// HeaderXFCC is the header Envoy forwards client certificate details in.
const HeaderXFCC = "x-forwarded-client-cert"

// Trust is what the Authenticators of one config share: the trust
// domains' bundles, the server-wide defaults of authz.mtls, the SPIFFE
// tier map, and the count of XFCC headers ignored.
type Trust struct {
	cfg     *config.AuthzMTLS
	bundles []*bundle
	// all holds every bundle, for routes that accept every trust domain.
	all          *x509bundle.Set
	tiers        []config.SPIFFETier
	untrustedHop atomic.Uint64
}

// NewTrust loads the bundles of cfg, which may be nil (no authz.mtls:
// principals and certificates are then read, nothing is verified beyond
// what Envoy did, XFCC is never believed). Its errors name config paths.
func NewTrust(cfg *config.AuthzMTLS) (*Trust, error) {
	t := &Trust{cfg: cfg, all: x509bundle.NewSet()}
	if cfg == nil {
		return t, nil
	}
	t.tiers = cfg.Tiers
	bundles, err := loadBundles(cfg.TrustDomains)
	if err != nil {
		return nil, err
	}
	t.bundles = bundles
	for _, b := range bundles {
		t.all.Add(b.x509)
	}
	return t, nil
}

// Authenticator returns the Authenticator of a route whose own mTLS
// settings are r (nil: the server-wide defaults throughout).
func (t *Trust) Authenticator(r *config.RouteMTLS) *Authenticator {
	p := t.cfg.RoutePolicy(r)
	a := &Authenticator{t: t, verify: p.VerifyCertificate, bundles: t.all}
	if p.VerifyCertificate && len(p.TrustDomains) > 0 {
		a.bundles = x509bundle.NewSet()
		for _, td := range p.TrustDomains {
			if b, ok := t.all.Get(td.TrustDomain()); ok {
				a.bundles.Add(b)
			}
		}
	}
	if x := p.XFCC; x != nil {
		a.xfcc = true
		a.hop = x.Hop
		a.proxyIDs = x.TrustedProxyIDs
		for _, c := range x.TrustedProxies {
			a.proxies = append(a.proxies, c.Prefix())
		}
	}
	return a
}

// UntrustedXFCC counts XFCC headers ignored because the peer that sent
// them is not a trusted hop of the route.
func (t *Trust) UntrustedXFCC() uint64 { return t.untrustedHop.Load() }

// Bundles reports every trust domain's bundle at now, in config order.
func (t *Trust) Bundles(now time.Time) []BundleStatus {
	out := make([]BundleStatus, len(t.bundles))
	for i, b := range t.bundles {
		out[i] = b.status(now)
	}
	return out
}

// Authenticator identifies the mTLS callers of one route: what it
// verifies, against which trust domains' bundles, and whom it believes
// an x-forwarded-client-cert from.
type Authenticator struct {
	t      *Trust
	verify bool
	// bundles are the route's trust domains' bundles.
	bundles  *x509bundle.Set
	xfcc     bool
	proxies  []netip.Prefix
	proxyIDs []config.SPIFFEID
	hop      int
}

// Identify returns the caller's certificate identity. CredentialsMissing
// means no certificate identity at all; MTLSInvalid a certificate or XFCC
// that cannot be parsed; MTLSUntrusted one that does not verify.
func (a *Authenticator) Identify(r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	if x, ok := r.Headers[HeaderXFCC]; ok && a.xfcc {
		if a.trustedHop(r) {
			return a.fromXFCC(x, ex)
		}
		a.t.untrustedHop.Add(1)
		if ex != nil {
			ex.Step("x-forwarded-client-cert ignored: peer %s (principal %q) is not a trusted hop", r.SourceAddress, r.SourcePrincipal)
		}
	} else if ok {
		if ex != nil {
			ex.Step("x-forwarded-client-cert ignored: the route believes it from no hop (xfcc)")
		}
	}
	return a.fromPeer(r, ex)
}

func (a *Authenticator) trustedHop(r *core.Request) bool {
	if r.SourcePrincipal != "" && slices.Contains(a.proxyIDs, config.SPIFFEID(r.SourcePrincipal)) {
		return true
	}
	if len(a.proxies) == 0 {
		return false
	}
	addr, ok := r.SourceAddr()
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range a.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (a *Authenticator) fromXFCC(v string, ex core.Explainer) (*core.Identity, core.Code) {
	els, err := ParseXFCC(v)
	if err != nil {
		if ex != nil {
			ex.Step("x-forwarded-client-cert from a trusted hop is malformed: %v", err)
		}
		return nil, core.MTLSInvalid
	}
	if a.hop > len(els) {
		if ex != nil {
			ex.Step("x-forwarded-client-cert has %d elements; hop %d is not there", len(els), a.hop)
		}
		return nil, core.MTLSInvalid
	}
	e := els[len(els)-a.hop]
	var certs []*x509.Certificate
	if e.Cert == "" && e.Chain != "" {
		// Chain holds the whole chain, leaf first.
		e.Cert, e.Chain = e.Chain, ""
	}
	if e.Cert != "" {
		if certs, err = ParseCertificates(e.Cert); err != nil {
			if ex != nil {
				ex.Step("XFCC Cert: %v", err)
			}
			return nil, core.MTLSInvalid
		}
		if e.Chain != "" {
			chain, err := ParseCertificates(e.Chain)
			if err != nil {
				if ex != nil {
					ex.Step("XFCC Chain: %v", err)
				}
				return nil, core.MTLSInvalid
			}
			certs = append(certs, chain[1:]...)
		}
	}
	uri := ""
	switch {
	case len(e.URI) > 1:
		if ex != nil {
			ex.Step("XFCC element has %d URI SANs; a SPIFFE identity has exactly one", len(e.URI))
		}
		return nil, core.MTLSInvalid
	case len(e.URI) == 1:
		uri = e.URI[0]
	}
	if ex != nil {
		ex.Step("x-forwarded-client-cert from a trusted hop, element %d of %d: URI %q, subject %q", len(els)-a.hop+1, len(els), uri, e.Subject)
	}
	return a.identity(uri, e.Subject, certs, ex)
}

func (a *Authenticator) fromPeer(r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	var certs []*x509.Certificate
	if r.SourceCertificate != "" {
		var err error
		if certs, err = ParseCertificates(r.SourceCertificate); err != nil {
			if ex != nil {
				ex.Step("peer certificate: %v", err)
			}
			return nil, core.MTLSInvalid
		}
	}
	if r.SourcePrincipal == "" && len(certs) == 0 {
		return nil, core.CredentialsMissing
	}
	if ex != nil {
		ex.Step("peer principal %q, certificate forwarded: %t", r.SourcePrincipal, len(certs) > 0)
	}
	uri, subject := r.SourcePrincipal, ""
	if len(certs) > 0 && len(certs[0].URIs) == 0 && !hasSPIFFEScheme(uri) {
		// Envoy's principal of a certificate without URI SAN is its
		// first DNS SAN or its subject, not a URI the certificate would
		// have to hold: it names the caller.
		uri, subject = "", uri
	}
	return a.identity(uri, subject, certs, ex)
}

func hasSPIFFEScheme(s string) bool {
	return len(s) >= len("spiffe:") && strings.EqualFold(s[:len("spiffe:")], "spiffe:")
}

// identity builds the identity from a claimed URI SAN and, when present,
// the certificate (whose own URI SAN wins and must agree).
func (a *Authenticator) identity(uri, subject string, certs []*x509.Certificate, ex core.Explainer) (*core.Identity, core.Code) {
	var id spiffeid.ID
	if len(certs) > 0 {
		leaf := certs[0]
		cid, err := x509svid.IDFromCert(leaf)
		switch {
		case err == nil:
			if uri != "" && uri != cid.String() {
				if ex != nil {
					ex.Step("claimed URI %q is not the certificate's SPIFFE id %q", uri, cid)
				}
				return nil, core.MTLSInvalid
			}
			id = cid
		case uri != "" || len(leaf.URIs) > 0:
			if ex != nil {
				ex.Step("certificate has no valid SPIFFE id (%v)", err)
			}
			return nil, core.MTLSInvalid
		}
		if subject == "" {
			subject = leaf.Subject.String()
		}
		if a.verify {
			if code := a.verifyChain(id, certs, ex); code != core.OK {
				return nil, code
			}
		}
	} else {
		if a.verify {
			if ex != nil {
				ex.Step("verifyCertificate is on but no certificate was forwarded (Envoy's include_peer_certificate)")
			}
			return nil, core.MTLSUntrusted
		}
		if uri != "" {
			pid, err := spiffeid.FromString(uri)
			if err == nil {
				id = pid
			} else if len(uri) > 512 {
				return nil, core.MTLSInvalid
			}
		}
	}
	out := &core.Identity{Method: contract.AuthMethodMTLS}
	if !id.IsZero() {
		out.SPIFFEID = id.String()
		out.Subject = out.SPIFFEID
		out.Issuer = "spiffe://" + id.TrustDomain().Name()
		out.Tier = a.tierOf(out.SPIFFEID)
	} else {
		out.Subject = uri
		if out.Subject == "" {
			out.Subject = subject
		}
	}
	if out.Subject == "" || !contract.HeaderSafe(out.Subject) {
		if ex != nil {
			ex.Step("certificate identity is empty or not printable")
		}
		return nil, core.MTLSInvalid
	}
	if ex != nil {
		ex.Step("mTLS identity: subject %q, SPIFFE id %q, tier %q", out.Subject, out.SPIFFEID, out.Tier)
	}
	return out, core.OK
}

func (a *Authenticator) tierOf(id string) string {
	for _, t := range a.t.tiers {
		if t.ID == id {
			return t.Tier
		}
		if ok, _ := path.Match(t.ID, id); ok {
			return t.Tier
		}
	}
	return ""
}

// verifyChain verifies a certificate chain (leaf first) whose leaf has
// SPIFFE id id against the bundle of id's trust domain, when the route
// trusts that trust domain.
func (a *Authenticator) verifyChain(id spiffeid.ID, certs []*x509.Certificate, ex core.Explainer) core.Code {
	if id.IsZero() {
		if ex != nil {
			ex.Step("certificate has no SPIFFE id: only SPIFFE certificates are verified against trust bundles")
		}
		return core.MTLSUntrusted
	}
	if !a.bundles.Has(id.TrustDomain()) {
		if ex != nil {
			ex.Step("trust domain %s is not one the route trusts (%s)", id.TrustDomain(), a.trustedNames())
		}
		return core.MTLSUntrusted
	}
	if _, _, err := x509svid.Verify(certs, a.bundles); err != nil {
		if ex != nil {
			ex.Step("certificate does not verify against the bundle of trust domain %s: %v", id.TrustDomain(), err)
		}
		return core.MTLSUntrusted
	}
	if ex != nil {
		ex.Step("certificate verifies against the bundle of trust domain %s", id.TrustDomain())
	}
	return core.OK
}

func (a *Authenticator) trustedNames() string {
	var names []string
	for _, b := range a.bundles.Bundles() {
		names = append(names, b.TrustDomain().Name())
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
