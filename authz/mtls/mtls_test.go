package mtls

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestParseXFCC(t *testing.T) {
	tests := []struct {
		in      string
		want    []Element
		wantErr string
	}{
		{
			// Envoy's documented example.
			in: `By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
			want: []Element{{By: []string{"http://frontend.lyft.com"}, Hash: "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
				Subject: "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client", URI: []string{"http://testclient.lyft.com"}}},
		},
		{
			// Two elements, as appended by two proxies; DNS repeated.
			in: `By=spiffe://a/edge;URI=spiffe://a/client;DNS=x.example;DNS=y.example,By=spiffe://a/mesh;URI=spiffe://a/edge`,
			want: []Element{
				{By: []string{"spiffe://a/edge"}, URI: []string{"spiffe://a/client"}, DNS: []string{"x.example", "y.example"}},
				{By: []string{"spiffe://a/mesh"}, URI: []string{"spiffe://a/edge"}},
			},
		},
		{
			in:   `Subject="CN=a,O=b;c=\"d\"";hash=ab;Cert="-----BEGIN%20CERTIFICATE-----"`,
			want: []Element{{Subject: `CN=a,O=b;c="d"`, Hash: "ab", Cert: "-----BEGIN%20CERTIFICATE-----"}},
		},
		{in: `Future=ok;URI=spiffe://td/x`, want: []Element{{URI: []string{"spiffe://td/x"}}}},
		{in: ``, wantErr: "syntax"},
		{in: `URI`, wantErr: "syntax"},
		{in: `Hash=a;Hash=b`, wantErr: "repeated"},
		{in: `Subject="unterminated`, wantErr: "unterminated"},
		{in: `URI=a"b`, wantErr: "syntax"},
		{in: `URI=x;;`, wantErr: "syntax"},
		{in: strings.Repeat("URI=x,", 17) + "URI=x", wantErr: "too many"},
	}
	for _, tt := range tests {
		got, err := ParseXFCC(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseXFCC(%q) error = %v; want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseXFCC(%q) = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseXFCC(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func FuzzParseXFCC(f *testing.F) {
	f.Add(`By=http://frontend.lyft.com;Hash=468e;Subject="/C=US/CN=Test Client";URI=http://testclient.lyft.com`)
	f.Add(`By=spiffe://a/edge;URI=spiffe://a/client;DNS=x,By=spiffe://a/mesh;URI=spiffe://a/edge`)
	f.Add(`Subject="a\"b;c,d";Cert="x%0Ay"`)
	f.Fuzz(func(t *testing.T, s string) {
		els, err := ParseXFCC(s)
		if err == nil && len(els) == 0 {
			t.Fatalf("ParseXFCC(%q) = no elements and no error", s)
		}
		if len(els) > maxXFCCElements {
			t.Fatalf("ParseXFCC(%q) = %d elements", s, len(els))
		}
	})
}

// newCA makes a CA valid for an hour either side of now.
func newCA(t testing.TB, cn string) *testenv.CA {
	t.Helper()
	return testenv.NewCA(t, cn, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
}

// leaf issues a client certificate with the given URI SANs, as Envoy
// forwards it (URL-encoded PEM).
func leaf(t testing.TB, ca *testenv.CA, uris ...string) string {
	t.Helper()
	return ca.Issue(t, testenv.Issue{URIs: uris}).Forwarded()
}

func TestIdentify(t *testing.T) {
	ca := newCA(t, "example.org CA")
	rogue := newCA(t, "rogue CA")
	good := leaf(t, ca, "spiffe://example.org/ns/prod/sa/web")
	cfg := &config.AuthzMTLS{
		TrustDomains:      []config.TrustDomain{{Name: config.MustSPIFFETrustDomain("example.org"), Bundle: ca.PEM}},
		VerifyCertificate: true,
		XFCC:              &config.XFCC{TrustedProxies: []config.CIDR{config.MustCIDR("10.0.0.0/8")}, TrustedProxyIDs: []config.SPIFFEID{"spiffe://example.org/edge"}, Hop: 1},
		Tiers:             []config.SPIFFETier{{ID: "spiffe://example.org/ns/prod/*/*", Tier: "internal"}},
	}
	tr, err := NewTrust(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Authenticator(&config.RouteMTLS{})
	tests := []struct {
		name        string
		r           core.Request
		want        core.Code
		wantSPIFFE  string
		wantSubject string
	}{
		{"peer certificate verified", core.Request{SourcePrincipal: "spiffe://example.org/ns/prod/sa/web", SourceCertificate: good},
			core.OK, "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/prod/sa/web"},
		{"no certificate at all", core.Request{}, core.CredentialsMissing, "", ""},
		{"principal without certificate while verifying", core.Request{SourcePrincipal: "spiffe://example.org/x"}, core.MTLSUntrusted, "", ""},
		{"certificate of another CA", core.Request{SourceCertificate: leaf(t, rogue, "spiffe://example.org/ns/prod/sa/web")}, core.MTLSUntrusted, "", ""},
		{"malformed PEM", core.Request{SourceCertificate: "-----BEGIN%20CERTIFICATE-----%0Agarbage"}, core.MTLSInvalid, "", ""},
		{"not URL-encoded", core.Request{SourceCertificate: "%zz"}, core.MTLSInvalid, "", ""},
		{"principal disagrees with certificate", core.Request{SourcePrincipal: "spiffe://example.org/admin", SourceCertificate: good}, core.MTLSInvalid, "", ""},
		{"two URI SANs", core.Request{SourceCertificate: leaf(t, ca, "spiffe://example.org/a", "spiffe://example.org/b")}, core.MTLSInvalid, "", ""},
		{"XFCC from trusted CIDR", core.Request{SourceAddress: "10.1.2.3", Headers: map[string]string{HeaderXFCC: `By=spiffe://example.org/edge;Cert="` + good + `";URI=spiffe://example.org/ns/prod/sa/web`}},
			core.OK, "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/prod/sa/web"},
		{"XFCC from trusted proxy id", core.Request{SourceAddress: "192.0.2.1", SourcePrincipal: "spiffe://example.org/edge", Headers: map[string]string{HeaderXFCC: `Cert="` + good + `"`}},
			core.OK, "spiffe://example.org/ns/prod/sa/web", "spiffe://example.org/ns/prod/sa/web"},
		{"XFCC from untrusted peer is ignored", core.Request{SourceAddress: "192.0.2.1", Headers: map[string]string{HeaderXFCC: `Cert="` + good + `"`}}, core.CredentialsMissing, "", ""},
		{"malformed XFCC from trusted hop", core.Request{SourceAddress: "10.0.0.1", Headers: map[string]string{HeaderXFCC: `Cert="x`}}, core.MTLSInvalid, "", ""},
		{"XFCC without certificate while verifying", core.Request{SourceAddress: "10.0.0.1", Headers: map[string]string{HeaderXFCC: `URI=spiffe://example.org/ns/prod/sa/web`}}, core.MTLSUntrusted, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.Headers == nil {
				tt.r.Headers = map[string]string{}
			}
			id, code := a.Identify(&tt.r, nil)
			if code != tt.want {
				t.Fatalf("Identify(%s) = %v; want %v", tt.name, code, tt.want)
			}
			if code != core.OK {
				return
			}
			if id.SPIFFEID != tt.wantSPIFFE || id.Subject != tt.wantSubject || id.Tier != "internal" {
				t.Errorf("Identify(%s) = %+v; want SPIFFE %q, subject %q, tier internal", tt.name, id, tt.wantSPIFFE, tt.wantSubject)
			}
		})
	}
	if tr.UntrustedXFCC() != 1 {
		t.Errorf("UntrustedXFCC() = %d; want 1", tr.UntrustedXFCC())
	}
}

func TestIdentifyWithoutVerification(t *testing.T) {
	tr, err := NewTrust(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Authenticator(&config.RouteMTLS{})
	r := &core.Request{SourcePrincipal: "spiffe://example.org/ns/a/sa/b", Headers: map[string]string{HeaderXFCC: "URI=spiffe://evil/x"}}
	id, code := a.Identify(r, nil)
	if code != core.OK || id.SPIFFEID != "spiffe://example.org/ns/a/sa/b" {
		t.Errorf("Identify(principal only, XFCC never trusted) = %+v, %v; want the principal", id, code)
	}
}

func TestLoadBundlesErrors(t *testing.T) {
	_, err := NewTrust(&config.AuthzMTLS{TrustDomains: []config.TrustDomain{
		{Name: config.MustSPIFFETrustDomain("example.org"), Bundle: "not pem"},
		{Name: config.MustSPIFFETrustDomain("b.org"), Bundle: "{}"},
		{Name: config.MustSPIFFETrustDomain("c.org"), BundleFile: "/nonexistent/c.org.pem"},
	}})
	for _, want := range []string{"trustDomains[0].bundle: not PEM", "trustDomains[1].bundle: ", "trustDomains[2].bundleFile: cannot read"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewTrust(bad bundles) = %v; want %q", err, want)
		}
	}
}

func FuzzParseCertificates(f *testing.F) {
	ca := newCA(f, "fuzz")
	f.Add(leaf(f, ca, "spiffe://fuzz/a"))
	f.Add("-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----")
	f.Add("%")
	f.Fuzz(func(t *testing.T, s string) {
		certs, err := ParseCertificates(s)
		if err == nil && len(certs) == 0 {
			t.Fatalf("ParseCertificates(%q) = nothing and no error", s)
		}
	})
}
