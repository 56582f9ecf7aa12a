package mtls

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func ptr[T any](v T) *T { return &v }

// TestRouteTrust: one set of trust domains, routes that trust them
// differently. A route that verifies strictly does not force it on the
// others, and each route believes XFCC from its own hops only.
func TestRouteTrust(t *testing.T) {
	prod, partner := newCA(t, "prod CA"), newCA(t, "partner CA")
	inter := prod.Intermediate(t, "prod issuing CA")
	dir := t.TempDir()
	// The partner's bundle is a SPIFFE bundle document, prod's plain PEM.
	sb := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("partner.example"), []*x509.Certificate{partner.Cert})
	doc, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	partnerFile := filepath.Join(dir, "partner.json")
	if err := os.WriteFile(partnerFile, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.AuthzMTLS{
		TrustDomains: []config.TrustDomain{
			{Name: config.MustSPIFFETrustDomain("prod.example"), Bundle: prod.PEM},
			{Name: config.MustSPIFFETrustDomain("partner.example"), BundleFile: config.FilePath(partnerFile)},
		},
		XFCC: &config.XFCC{TrustedProxies: []config.CIDR{config.MustCIDR("10.0.0.0/8")}, Hop: 1},
	}
	tr, err := NewTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]*Authenticator{
		// The server-wide defaults: nothing verified, XFCC from 10/8.
		"lax": tr.Authenticator(&config.RouteMTLS{}),
		// prod only, verified, peer certificate only.
		"strict": tr.Authenticator(&config.RouteMTLS{VerifyCertificate: ptr(true),
			TrustDomains: []config.SPIFFETrustDomain{config.MustSPIFFETrustDomain("prod.example")},
			XFCC:         &config.RouteXFCC{Disabled: true}}),
		// Every trust domain, verified; XFCC as the server says.
		"partners": tr.Authenticator(&config.RouteMTLS{VerifyCertificate: ptr(true)}),
		// Its own hop: the edge proxy, by SPIFFE id, two elements back.
		"edge": tr.Authenticator(&config.RouteMTLS{XFCC: &config.RouteXFCC{XFCC: config.XFCC{
			TrustedProxyIDs: []config.SPIFFEID{"spiffe://prod.example/edge"}, Hop: 2}}}),
	}
	web := leaf(t, prod, "spiffe://prod.example/ns/web/sa/web")
	app := leaf(t, partner, "spiffe://partner.example/app")
	// The partner's CA signs an id of prod's trust domain: Envoy's
	// listener, trusting both CAs, lets it through; only verification
	// against prod's own bundle catches it.
	impostor := leaf(t, partner, "spiffe://prod.example/ns/web/sa/admin")
	noID := leaf(t, prod)
	batch := inter.Issue(t, testenv.Issue{URIs: []string{"spiffe://prod.example/ns/batch/sa/job"}})
	chained := batch.Forwarded()
	chain := url.PathEscape(batch.PEM + inter.PEM)
	xfcc := func(cert string) map[string]string {
		return map[string]string{HeaderXFCC: `By=spiffe://prod.example/edge;Cert="` + cert + `";URI=spiffe://prod.example/ns/web/sa/web`}
	}
	tests := []struct {
		route string
		name  string
		r     core.Request
		want  core.Code
		id    string
	}{
		{"strict", "prod certificate", core.Request{SourceCertificate: web}, core.OK, "spiffe://prod.example/ns/web/sa/web"},
		{"partners", "prod certificate", core.Request{SourceCertificate: web}, core.OK, "spiffe://prod.example/ns/web/sa/web"},
		{"strict", "partner certificate: trust domain not trusted here", core.Request{SourceCertificate: app}, core.MTLSUntrusted, ""},
		{"partners", "partner certificate (SPIFFE bundle document)", core.Request{SourceCertificate: app}, core.OK, "spiffe://partner.example/app"},
		{"strict", "impostor", core.Request{SourceCertificate: impostor}, core.MTLSUntrusted, ""},
		{"partners", "impostor: prod's id, partner's CA", core.Request{SourceCertificate: impostor}, core.MTLSUntrusted, ""},
		{"lax", "impostor passes where nothing is verified", core.Request{SourceCertificate: impostor}, core.OK, "spiffe://prod.example/ns/web/sa/admin"},
		{"strict", "principal without certificate", core.Request{SourcePrincipal: "spiffe://prod.example/ns/web/sa/web"}, core.MTLSUntrusted, ""},
		{"lax", "principal without certificate", core.Request{SourcePrincipal: "spiffe://prod.example/ns/web/sa/web"}, core.OK, "spiffe://prod.example/ns/web/sa/web"},
		{"strict", "certificate without SPIFFE id", core.Request{SourceCertificate: noID}, core.MTLSUntrusted, ""},
		{"strict", "leaf of an intermediate, alone", core.Request{SourceCertificate: chained}, core.MTLSUntrusted, ""},
		{"lax", "XFCC from a trusted CIDR", core.Request{SourceAddress: "10.1.2.3", Headers: xfcc(web)}, core.OK, "spiffe://prod.example/ns/web/sa/web"},
		{"strict", "XFCC disabled on the route", core.Request{SourceAddress: "10.1.2.3", Headers: xfcc(web)}, core.CredentialsMissing, ""},
		{"partners", "XFCC whose Chain carries the intermediate", core.Request{SourceAddress: "10.1.2.3",
			Headers: map[string]string{HeaderXFCC: `Cert="` + chained + `";Chain="` + chain + `"`}}, core.OK, "spiffe://prod.example/ns/batch/sa/job"},
		{"partners", "XFCC of an impostor from a trusted hop", core.Request{SourceAddress: "10.1.2.3", Headers: map[string]string{HeaderXFCC: `Cert="` + impostor + `"`}}, core.MTLSUntrusted, ""},
		{"edge", "XFCC from the edge proxy, two hops back", core.Request{SourcePrincipal: "spiffe://prod.example/edge",
			Headers: map[string]string{HeaderXFCC: `Cert="` + web + `",By=spiffe://prod.example/mesh;URI=spiffe://prod.example/edge`}}, core.OK, "spiffe://prod.example/ns/web/sa/web"},
		{"edge", "XFCC from a CIDR only the server trusts", core.Request{SourceAddress: "10.1.2.3", Headers: xfcc(web)}, core.CredentialsMissing, ""},
		{"edge", "XFCC from the edge proxy, hop missing", core.Request{SourcePrincipal: "spiffe://prod.example/edge", Headers: xfcc(web)}, core.MTLSInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.route+"/"+tt.name, func(t *testing.T) {
			if tt.r.Headers == nil {
				tt.r.Headers = map[string]string{}
			}
			id, code := routes[tt.route].Identify(&tt.r, nil)
			if code != tt.want {
				t.Fatalf("Identify on %s = %v; want %v", tt.route, code, tt.want)
			}
			if code == core.OK && id.SPIFFEID != tt.id {
				t.Errorf("Identify on %s = SPIFFE id %q; want %q", tt.route, id.SPIFFEID, tt.id)
			}
		})
	}
	if n := tr.UntrustedXFCC(); n != 1 {
		t.Errorf("UntrustedXFCC() = %d; want 1 (the edge route's XFCC from 10.1.2.3; a disabled route ignores XFCC without counting)", n)
	}
}

// TestRoutePolicyWithoutServerSection: with no authz.mtls, a route's
// mtls: {} reads principals and never believes XFCC.
func TestRoutePolicyWithoutServerSection(t *testing.T) {
	tr, err := NewTrust(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Authenticator(nil)
	id, code := a.Identify(&core.Request{SourcePrincipal: "spiffe://a.example/x", Headers: map[string]string{HeaderXFCC: "URI=spiffe://evil.example/x"}}, nil)
	if code != core.OK || id.SPIFFEID != "spiffe://a.example/x" {
		t.Errorf("Identify = %+v, %v; want the principal", id, code)
	}
	if got := tr.Bundles(time.Now()); len(got) != 0 {
		t.Errorf("Bundles() = %v; want none", got)
	}
}

// FuzzIdentify feeds a route that verifies prod's certificates only, and
// one that believes XFCC from 10/8 without verifying, whatever a peer and
// a header can carry: no panic, and the verifying route never lets in an
// identity of another trust domain or one no certificate of prod proves.
func FuzzIdentify(f *testing.F) {
	prod, partner := newCA(f, "prod CA"), newCA(f, "partner CA")
	tr, err := NewTrust(&config.AuthzMTLS{
		TrustDomains: []config.TrustDomain{
			{Name: config.MustSPIFFETrustDomain("prod.example"), Bundle: prod.PEM},
			{Name: config.MustSPIFFETrustDomain("partner.example"), Bundle: partner.PEM},
		},
		XFCC: &config.XFCC{TrustedProxies: []config.CIDR{config.MustCIDR("10.0.0.0/8")}, Hop: 1},
	})
	if err != nil {
		f.Fatal(err)
	}
	strict := tr.Authenticator(&config.RouteMTLS{VerifyCertificate: ptr(true),
		TrustDomains: []config.SPIFFETrustDomain{config.MustSPIFFETrustDomain("prod.example")}})
	lax := tr.Authenticator(&config.RouteMTLS{})
	web := leaf(f, prod, "spiffe://prod.example/ns/web/sa/web")
	app := leaf(f, partner, "spiffe://partner.example/app")
	f.Add("10.1.2.3", "", web, `By=spiffe://prod.example/edge;Cert="`+app+`";URI=spiffe://partner.example/app`)
	f.Add("192.0.2.1", "spiffe://prod.example/ns/web/sa/web", web, "")
	f.Add("10.0.0.1", "spiffe://prod.example/edge", "", `Cert="`+web+`",URI=spiffe://prod.example/edge`)
	f.Add("::ffff:10.0.0.1", "", app, `URI=spiffe://prod.example/ns/web/sa/web;Subject="CN=x"`)
	f.Fuzz(func(t *testing.T, source, principal, cert, xfcc string) {
		r := core.Request{SourceAddress: source, SourcePrincipal: principal, SourceCertificate: cert, Headers: map[string]string{}}
		if xfcc != "" {
			r.Headers[HeaderXFCC] = xfcc
		}
		if id, code := strict.Identify(&r, nil); code == core.OK {
			u, err := url.Parse(id.SPIFFEID)
			if err != nil || u.Host != "prod.example" || id.Subject != id.SPIFFEID {
				t.Fatalf("strict route let in %+v", id)
			}
		}
		if id, code := lax.Identify(&r, nil); code == core.OK && id.Subject == "" {
			t.Fatalf("lax route let in an empty identity %+v", id)
		}
	})
}

// TestCertificateWithoutSPIFFEID: Envoy sends the principal of a
// certificate without URI SAN as its DNS SAN or subject. A route that
// verifies nothing takes it as the caller's subject; a route that
// verifies refuses it (only SPIFFE certificates are verified); a claimed
// URI that the certificate does not hold is refused everywhere.
func TestCertificateWithoutSPIFFEID(t *testing.T) {
	ca := newCA(t, "corp CA")
	tr, err := NewTrust(&config.AuthzMTLS{TrustDomains: []config.TrustDomain{{Name: config.MustSPIFFETrustDomain("corp.example"), Bundle: ca.PEM}}})
	if err != nil {
		t.Fatal(err)
	}
	lax := tr.Authenticator(&config.RouteMTLS{})
	strict := tr.Authenticator(&config.RouteMTLS{VerifyCertificate: ptr(true)})
	cert := ca.Issue(t, testenv.Issue{CN: "billing-batch"}).Forwarded()
	for _, tt := range []struct {
		name      string
		a         *Authenticator
		principal string
		want      core.Code
		subject   string
	}{
		{"lax, principal the subject", lax, "CN=billing-batch", core.OK, "CN=billing-batch"},
		{"lax, principal a DNS SAN", lax, "billing.corp.example", core.OK, "billing.corp.example"},
		{"lax, no principal", lax, "", core.OK, "CN=billing-batch"},
		{"lax, a URI the certificate does not hold", lax, "spiffe://corp.example/admin", core.MTLSInvalid, ""},
		{"strict", strict, "CN=billing-batch", core.MTLSUntrusted, ""},
	} {
		id, code := tt.a.Identify(&core.Request{SourcePrincipal: tt.principal, SourceCertificate: cert, Headers: map[string]string{}}, nil)
		if code != tt.want || (code == core.OK && (id.Subject != tt.subject || id.SPIFFEID != "")) {
			t.Errorf("%s: Identify = %+v, %v; want %v, subject %q", tt.name, id, code, tt.want, tt.subject)
		}
	}
}
