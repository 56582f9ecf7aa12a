package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mtlsBase = `apiVersion: gatehouse/v1
authz:
  mtls:
    trustDomains:
      - {name: prod.example, bundle: "-----BEGIN CERTIFICATE-----"}
      - {name: partner.example, bundle: "-----BEGIN CERTIFICATE-----"}
    xfcc: {trustedProxies: [10.0.0.0/8]}
`

func TestRouteMTLSValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"trust domain not declared", mtlsBase + `routes:
  - {id: r, authz: {mtls: {verifyCertificate: true, trustDomains: [prod.example, other.example]}}}`,
			[]string{`routes[0].authz.mtls.trustDomains[1]: unknown trust domain "other.example"; authz.mtls.trustDomains declares prod.example, partner.example`}},
		{"trust domains on a route that does not verify", mtlsBase + `routes:
  - {id: r, authz: {mtls: {trustDomains: [prod.example]}}}`,
			[]string{"routes[0].authz.mtls.trustDomains: only used by a route that verifies certificates"}},
		{"trust domain twice", mtlsBase + `routes:
  - {id: r, authz: {mtls: {verifyCertificate: true, trustDomains: [prod.example, prod.example]}}}`,
			[]string{`routes[0].authz.mtls.trustDomains[1]: duplicate trust domain "prod.example" (also trustDomains[0])`}},
		{"verification without bundles", `apiVersion: gatehouse/v1
authz: {}
routes:
  - {id: r, authz: {mtls: {verifyCertificate: true}}}`,
			[]string{"routes[0].authz.mtls.verifyCertificate: needs authz.mtls.trustDomains to verify against"}},
		{"not a trust domain", mtlsBase + `routes:
  - {id: r, authz: {mtls: {verifyCertificate: true, trustDomains: ["Prod.Example"]}}}`,
			[]string{`routes[0].authz.mtls.trustDomains[0]: "Prod.Example" is not a SPIFFE trust domain`}},
		{"xfcc disabled with hops", mtlsBase + `routes:
  - {id: r, authz: {mtls: {xfcc: {disabled: true, trustedProxies: [10.0.0.0/8]}}}}`,
			[]string{"routes[0].authz.mtls.xfcc.disabled: a route that believes no x-forwarded-client-cert names no trusted hops"}},
		{"xfcc without hops", mtlsBase + `routes:
  - {id: r, authz: {mtls: {xfcc: {hop: 2}}}}`,
			[]string{"routes[0].authz.mtls.xfcc: name the hops allowed to send x-forwarded-client-cert"}},
		{"xfcc hop out of range", mtlsBase + `routes:
  - {id: r, authz: {mtls: {xfcc: {trustedProxyIDs: [spiffe://prod.example/edge], hop: 17}}}}`,
			[]string{"routes[0].authz.mtls.xfcc.hop: 17 is out of range"}},
		{"xfcc unknown field", mtlsBase + `routes:
  - {id: r, authz: {mtls: {xfcc: {trustedProxy: [10.0.0.0/8]}}}}`,
			[]string{`routes[0].authz.mtls.xfcc.trustedProxy: unknown field`}},
		{"expiry warning out of range", `apiVersion: gatehouse/v1
authz:
  mtls: {trustDomains: [{name: a.example, bundle: x, expiryWarning: 9000h}, {name: b.example, bundle: x, expiryWarning: -1h}]}`,
			[]string{"authz.mtls.trustDomains[0].expiryWarning: 9000h0m0s is out of range", `authz.mtls.trustDomains[1].expiryWarning: "-1h" is negative`}},
	}
	for _, tt := range tests {
		_, err := LoadBytes("<t>", []byte(tt.yaml), LoadOptions{})
		if err == nil {
			t.Errorf("%s: Load = nil; want errors %q", tt.name, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Load = %v; want %q", tt.name, err, w)
			}
		}
	}
}

// TestRouteMTLSWarnings: a route's trust domains that leave out the
// trust domain its SPIFFE requirement names admit nobody.
func TestRouteMTLSWarnings(t *testing.T) {
	cfg, err := LoadBytes("<t>", []byte(mtlsBase+`routes:
  - id: r
    authz:
      mtls: {verifyCertificate: true, trustDomains: [partner.example]}
      require: {spiffe: {trustDomain: prod.example}}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings {
		got = append(got, w.Error())
	}
	want := `routes[0].authz.mtls.trustDomains: require.spiffe.trustDomain "prod.example" is not one of them`
	if !strings.Contains(strings.Join(got, "\n"), want) {
		t.Errorf("Warnings = %q; want %q", got, want)
	}
}

// TestRoutePolicy: what a route sets wins, what it leaves unset comes
// from authz.mtls.
func TestRoutePolicy(t *testing.T) {
	cfg, err := LoadBytes("<t>", []byte(mtlsBase+`  # (authz.mtls continues)
routes:
  - {id: defaults, authz: {mtls: {}}}
  - {id: strict, authz: {mtls: {verifyCertificate: true, trustDomains: [prod.example], xfcc: {disabled: true}}}}
  - {id: edge, authz: {mtls: {xfcc: {trustedProxyIDs: [spiffe://prod.example/edge], hop: 2}}}}
  - {id: lax, authz: {mtls: {verifyCertificate: false}}}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serverXFCC := &XFCC{TrustedProxies: []CIDR{MustCIDR("10.0.0.0/8")}, Hop: 1}
	want := map[string]MTLSPolicy{
		"defaults": {XFCC: serverXFCC},
		"strict":   {VerifyCertificate: true, TrustDomains: []SPIFFETrustDomain{MustSPIFFETrustDomain("prod.example")}},
		"edge":     {XFCC: &XFCC{TrustedProxyIDs: []SPIFFEID{"spiffe://prod.example/edge"}, Hop: 2}},
		"lax":      {XFCC: serverXFCC},
	}
	opts := cmp.Comparer(func(a, b CIDR) bool { return a.String() == b.String() })
	tdOpt := cmp.Comparer(func(a, b SPIFFETrustDomain) bool { return a.String() == b.String() })
	for _, r := range cfg.Routes {
		got := cfg.Authz.MTLS.RoutePolicy(r.Authz.MTLS)
		if diff := cmp.Diff(want[r.ID], got, opts, tdOpt); diff != "" {
			t.Errorf("RoutePolicy(%s) (-want +got):\n%s", r.ID, diff)
		}
	}
	// The server-wide verifyCertificate is the default a route may turn off.
	m := &AuthzMTLS{VerifyCertificate: true}
	if p := m.RoutePolicy(&RouteMTLS{}); !p.VerifyCertificate {
		t.Error("RoutePolicy(mtls: {}) under verifyCertificate: true does not verify")
	}
	off := false
	if p := m.RoutePolicy(&RouteMTLS{VerifyCertificate: &off}); p.VerifyCertificate {
		t.Error("RoutePolicy(verifyCertificate: false) under verifyCertificate: true verifies")
	}
	var none *AuthzMTLS
	if p := none.RoutePolicy(&RouteMTLS{}); p.VerifyCertificate || p.XFCC != nil {
		t.Errorf("RoutePolicy without authz.mtls = %+v; want nothing verified or believed", p)
	}
}
