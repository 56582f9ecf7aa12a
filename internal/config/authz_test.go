package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuthzValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of errors, with their paths
	}{
		{"hmac algorithm refused", `authz:
  jwt: {issuers: [{name: a, issuer: x, algorithms: [HS256], jwks: "{}"}]}`, []string{`authz.jwt.issuers[0].algorithms[0]: "HS256" is not a JWT algorithm (asymmetric only)`}},
		{"issuer without keys", `authz:
  jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256]}]}`, []string{"authz.jwt.issuers[0]: needs keys"}},
		{"unknown issuer on a route", `authz:
  jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwks: "{}"}]}
routes:
  - {id: r, authz: {jwt: {issuers: [b]}}}`, []string{`routes[0].authz.jwt.issuers[0]: unknown issuer "b"`}},
		{"route accepting nothing", `authz: {}
routes:
  - {id: r, authz: {require: {scopes: [a]}}}`, []string{"routes[0].authz: accepts no credential"}},
		{"public with methods", `authz: {apiKeys: {keys: [{id: k, hash: "sha256:` + strings.Repeat("a", 64) + `", subject: s}]}}
routes:
  - {id: r, authz: {public: true, apiKey: {}}}`, []string{"routes[0].authz.public: a public route takes no other authz settings"}},
		{"api key subject that would split a header", `authz: {apiKeys: {keys: [{id: k, hash: "sha256:` + strings.Repeat("a", 64) + `", subject: "a\r\nx-gatehouse-tier: gold", scopes: ["a b"]}]}}`,
			[]string{"authz.apiKeys.keys[0].subject: must be printable ASCII", "authz.apiKeys.keys[0].scopes[0]: must be printable ASCII without spaces"}},
		{"literal key instead of hash", `authz: {apiKeys: {keys: [{id: k, hash: "my-secret-key", subject: s}]}}`, []string{"authz.apiKeys.keys[0].hash: is not a key hash"}},
		{"webhook without secret", `authz: {webhooks: [{name: gh, scheme: github}]}`, []string{"authz.webhooks[0].secrets: at least one"}},
		{"webhook literal secret", `authz: {webhooks: [{name: gh, scheme: github, secrets: [hunter2]}]}`, []string{"authz.webhooks[0].secrets[0]: a literal secret is not allowed"}},
		{"generic without body", `authz: {webhooks: [{name: g, scheme: hmac, secrets: [env:X], hmac: {header: x-sig, template: "{timestamp}"}}]}`,
			[]string{`authz.webhooks[0].hmac.template: "{timestamp}" does not sign the body`, "uses {timestamp} but timestampHeader is not set"}},
		{"xfcc without hops", `authz: {mtls: {xfcc: {}}}`, []string{"authz.mtls.xfcc: name the hops"}},
		{"bad cidr", `authz: {jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwks: "{}"}]}}
routes:
  - {id: r, authz: {jwt: {}, require: {sourceCIDRs: [10.0.0.300/8]}}}`, []string{"routes[0].authz.require.sourceCIDRs[0]"}},
		{"claim header over an identity header", `authz: {jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwks: "{}"}]}}
routes:
  - {id: r, authz: {jwt: {}, claimHeaders: [{claim: plan, header: x-gatehouse-tier}]}}`, []string{`routes[0].authz.claimHeaders[0].header: "x-gatehouse-tier" is an identity header`}},
		{"replay by an unsigned github id", `authz: {webhooks: [{name: gh, scheme: github, secrets: [env:X], replay: id}]}`,
			[]string{"authz.webhooks[0].replay: the github scheme does not sign its delivery id"}},
		{"replay by an id the hmac template leaves out", `authz: {webhooks: [{name: g, scheme: hmac, secrets: [env:X], replay: id, hmac: {header: x-sig, idHeader: x-id}}]}`,
			[]string{"authz.webhooks[0].replay: hmac.template does not sign {id}"}},
		{"policy without an authz section", `routes:
  - {id: r, authz: {jwt: {}}}`, []string{"routes[0].authz: the config has no authz: section, so nothing would enforce this policy"}},
		{"loopback http jwks_uri without discovery", `authz: {jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwksURL: "https://x/k", allowLoopbackHTTPJWKS: true}]}}`,
			[]string{"authz.jwt.issuers[0].allowLoopbackHTTPJWKS: only used with discovery: true"}},
		{"jwks size cap out of range", `authz: {jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwksURL: "https://x/k", maxJWKSSize: 100}, {name: b, issuer: y, algorithms: [RS256], jwksURL: "https://y/k", maxJWKSSize: 1GiB}]}}`,
			[]string{"authz.jwt.issuers[0].maxJWKSSize: 100 is out of range; use 1KiB to 16MiB", "authz.jwt.issuers[1].maxJWKSSize: 1GiB is out of range"}},
		{"claims without jwt", `authz: {mtls: {}}
routes:
  - {id: r, authz: {mtls: {}, require: {claims: [{claim: a, equals: b}]}}}`, []string{"routes[0].authz.require.claims: claims come from JWTs"}},
	}
	for _, tt := range tests {
		_, err := LoadBytes("<t>", []byte("apiVersion: gatehouse/v1\n"+tt.yaml), LoadOptions{LookupEnv: func(string) (string, bool) { return "v", true }})
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

// TestJWKSOverPlainHTTPWarns: keys fetched over http:// from another host
// can be swapped in transit; a loopback identity provider is fine.
func TestJWKSOverPlainHTTPWarns(t *testing.T) {
	for _, tt := range []struct {
		issuer string
		warn   bool
	}{
		{"jwksURL: http://idp.example.com/jwks", true},
		{"discovery: true, issuer: http://idp.example.com", true},
		{"jwksURL: https://idp.example.com/jwks", false},
		{"jwksURL: http://127.0.0.1:8080/jwks", false},
		{"jwksURL: \"http://[::1]:8080/jwks\"", false},
		{"discovery: true, issuer: http://localhost:8080/realms/a", false},
	} {
		y := "apiVersion: gatehouse/v1\nauthz:\n  jwt: {issuers: [{name: a, algorithms: [RS256], audiences: [x], " + tt.issuer
		if !strings.Contains(tt.issuer, "issuer:") {
			y += ", issuer: x"
		}
		y += "}]}\n"
		cfg, err := LoadBytes("<t>", []byte(y), LoadOptions{})
		if err != nil {
			t.Fatalf("LoadBytes(%s) = %v", tt.issuer, err)
		}
		if got := strings.Contains(cfg.Warnings.Error(), "plain HTTP"); got != tt.warn {
			t.Errorf("LoadBytes(%s) warnings = %q; want a plain HTTP warning: %v", tt.issuer, cfg.Warnings.Error(), tt.warn)
		}
	}
}

// TestXFCCTrustEveryoneWarns: trusting XFCC from 0.0.0.0/0 lets any
// client claim any certificate identity.
func TestXFCCTrustEveryoneWarns(t *testing.T) {
	for cidr, warn := range map[string]bool{"0.0.0.0/0": true, "::/0": true, "10.0.0.0/8": false} {
		y := "apiVersion: gatehouse/v1\nauthz:\n  mtls: {xfcc: {trustedProxies: [\"" + cidr + "\"]}}\n"
		cfg, err := LoadBytes("<t>", []byte(y), LoadOptions{})
		if err != nil {
			t.Fatalf("LoadBytes(%s) = %v", cidr, err)
		}
		if got := strings.Contains(cfg.Warnings.Error(), "trusts every peer"); got != warn {
			t.Errorf("LoadBytes(%s) warnings = %q; want a trusts-every-peer warning: %v", cidr, cfg.Warnings.Error(), warn)
		}
	}
}

func TestAuthzNeeds(t *testing.T) {
	cfg, err := LoadBytes("<t>", []byte(`apiVersion: gatehouse/v1
authz:
  apiKeys: {keys: [{id: k, hash: "sha256:`+strings.Repeat("a", 64)+`", subject: s}]}
  webhooks: [{name: gh, scheme: github, secrets: [env:X], maxBodySize: 256KiB}]
routes:
  - {id: open, authz: {public: true}}
  - {id: keyed, authz: {apiKey: {}}}
  - {id: hook, authz: {webhook: gh}}
  - {id: bare}
`), LoadOptions{LookupEnv: func(string) (string, bool) { return "v", true }})
	if err != nil {
		t.Fatal(err)
	}
	want := []AuthzNeeds{{Disabled: true}, {}, {RequestBody: true, MaxRequestBytes: 256 << 10}, {}}
	for i := range cfg.Routes {
		if diff := cmp.Diff(want[i], cfg.Routes[i].AuthzNeeds(cfg)); diff != "" {
			t.Errorf("AuthzNeeds(%s) (-want +got):\n%s", cfg.Routes[i].ID, diff)
		}
	}
	if len(cfg.Warnings) == 0 || !strings.Contains(cfg.Warnings.Error(), `route "bare" has no authz: section`) {
		t.Errorf("warnings = %v; want the route without policy named", cfg.Warnings)
	}
	cfg.Authz = nil
	if n := cfg.Routes[1].AuthzNeeds(cfg); !n.Disabled {
		t.Errorf("AuthzNeeds without authz: = %+v; want disabled", n)
	}
}
