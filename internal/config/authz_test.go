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
		{"failure mode on a public route", `authz: {}
routes:
  - {id: r, authz: {public: true, failureMode: open}}`, []string{"routes[0].authz.public: a public route takes no other authz settings"}},
		{"webhook route failing open", `authz: {webhooks: [{name: gh, scheme: github, secrets: [env:X]}]}
routes:
  - {id: r, authz: {webhook: gh, failureMode: open}}`, []string{"routes[0].authz.failureMode: a webhook route cannot let unverified deliveries through"}},
		{"unknown failure mode", `authz: {apiKeys: {keys: [{id: k, hash: "sha256:` + strings.Repeat("a", 64) + `", subject: s}]}}
routes:
  - {id: r, authz: {apiKey: {}, failureMode: sometimes}}`, []string{`routes[0].authz.failureMode: "sometimes" is not a failure mode`}},
		{"policy without an authz section", `routes:
  - {id: r, authz: {jwt: {}}}`, []string{"routes[0].authz: the config has no authz: section, so nothing would enforce this policy"}},
		{"replay by an unsigned gitlab id", `authz: {webhooks: [{name: gl, scheme: gitlab, secrets: [env:X], replay: id}]}`,
			[]string{"authz.webhooks[0].replay: the gitlab token is a static secret that signs nothing"}},
		{"replay guard on a static gitlab token", `authz: {webhooks: [{name: gl, scheme: gitlab, secrets: [env:X], replay: signature}]}`,
			[]string{"authz.webhooks[0].replay: the gitlab token is a static secret that signs nothing"}},
		{"replay by an unsigned twilio id", `authz: {webhooks: [{name: tw, scheme: twilio, secrets: [env:X], replay: id}]}`,
			[]string{"authz.webhooks[0].replay: the twilio scheme does not sign its delivery id"}},
		{"twilio settings on another scheme", `authz: {webhooks: [{name: gh, scheme: github, secrets: [env:X], twilio: {publicBaseURL: "https://a.example"}}]}`,
			[]string{"authz.webhooks[0].twilio: only used with scheme: twilio"}},
		{"twilio public base URL with a query", `authz: {webhooks: [{name: tw, scheme: twilio, secrets: [env:X], twilio: {publicBaseURL: "https://a.example/hook?x=1"}}]}`,
			[]string{`authz.webhooks[0].twilio.publicBaseURL: "https://a.example/hook?x=1" has a query or fragment`}},
		{"twilio public base URL with credentials", `authz: {webhooks: [{name: tw, scheme: twilio, secrets: [env:X], twilio: {publicBaseURL: "https://u:p@a.example"}}]}`,
			[]string{`authz.webhooks[0].twilio.publicBaseURL: "https://u:p@a.example" holds user information`}},
		{"twilio public base URL without a host", `authz: {webhooks: [{name: tw, scheme: twilio, secrets: [env:X], twilio: {publicBaseURL: "hooks.example.com"}}]}`,
			[]string{`authz.webhooks[0].twilio.publicBaseURL: "hooks.example.com" is not an absolute http(s) URL`}},
		{"separator inside a base64 signature", `authz: {webhooks: [{name: g, scheme: hmac, secrets: [env:X], hmac: {header: x-sig, encoding: base64, separator: "="}}]}`,
			[]string{`authz.webhooks[0].hmac.separator: "=" holds a character a base64 signature is written with`}},
		{"separator inside the prefix", `authz: {webhooks: [{name: g, scheme: hmac, secrets: [env:X], hmac: {header: x-sig, prefix: "v1,", separator: ","}}]}`,
			[]string{`authz.webhooks[0].hmac.separator: "," occurs in the prefix`}},
		{"separator that is a control character", `authz: {webhooks: [{name: g, scheme: hmac, secrets: [env:X], hmac: {header: x-sig, separator: "\t"}}]}`,
			[]string{`authz.webhooks[0].hmac.separator: "\t" must be printable ASCII`}},
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
  webhooks:
    - {name: gh, scheme: github, secrets: [env:X], maxBodySize: 256KiB}
    - {name: gl, scheme: gitlab, secrets: [env:X]}
routes:
  - {id: open, authz: {public: true}}
  - {id: keyed, authz: {apiKey: {}}}
  - {id: hook, authz: {webhook: gh}}
  - {id: bare}
  - {id: gitlab, authz: {webhook: gl}}
  - {id: lenient, authz: {apiKey: {}, failureMode: open}}
`), LoadOptions{LookupEnv: func(string) (string, bool) { return "v", true }})
	if err != nil {
		t.Fatal(err)
	}
	// GitLab's token covers no body: Envoy is not asked to buffer one.
	// Without xds: the routes fail closed; one route opens itself.
	want := []AuthzNeeds{{Disabled: true}, {FailureMode: FailClosed}, {RequestBody: true, MaxRequestBytes: 256 << 10, FailureMode: FailClosed},
		{FailureMode: FailClosed}, {FailureMode: FailClosed}, {FailureMode: FailOpen}}
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

// TestWebhookReplayKey: auto resolves to what each scheme can guard
// soundly, and an explicit choice the scheme supports is kept.
func TestWebhookReplayKey(t *testing.T) {
	for _, tt := range []struct {
		source string
		want   ReplayKey
	}{
		{"{name: s, scheme: github, secrets: [env:X]}", ReplaySignature},
		{"{name: s, scheme: svix, secrets: [env:X]}", ReplaySignature},
		{"{name: s, scheme: svix, secrets: [env:X], replay: id}", ReplayID},
		{"{name: s, scheme: twilio, secrets: [env:X]}", ReplayOff},
		{"{name: s, scheme: twilio, secrets: [env:X], replay: signature}", ReplaySignature},
		{"{name: s, scheme: gitlab, secrets: [env:X]}", ReplayOff},
		{"{name: s, scheme: stripe, secrets: [env:X], replay: off}", ReplayOff},
	} {
		cfg, err := LoadBytes("<t>", []byte("apiVersion: gatehouse/v1\nauthz: {webhooks: ["+tt.source+"]}\n"), LoadOptions{LookupEnv: func(string) (string, bool) { return "v", true }})
		if err != nil {
			t.Errorf("LoadBytes(%s) = %v", tt.source, err)
			continue
		}
		if got := cfg.Authz.Webhooks[0].ReplayKey(); got != tt.want {
			t.Errorf("ReplayKey(%s) = %s; want %s", tt.source, got, tt.want)
		}
	}
}

// TestWebhookProviderSettings: settings of the new providers that are
// valid load without error or warning.
func TestWebhookProviderSettings(t *testing.T) {
	for _, src := range []string{
		`{name: s, scheme: twilio, secrets: [env:X], twilio: {publicBaseURL: "https://hooks.example.com"}}`,
		`{name: s, scheme: twilio, secrets: [env:X, env:Y], twilio: {publicBaseURL: "http://hooks.example.com:8080/twilio/"}}`,
		`{name: s, scheme: hmac, secrets: [env:X], hmac: {header: webhook-signature, prefix: "v1,", encoding: base64, separator: " ", idHeader: webhook-id, timestampHeader: webhook-timestamp, template: "{id}.{timestamp}.{body}"}, replay: id}`,
		`{name: s, scheme: hmac, secrets: [env:X], hmac: {header: x-sig, prefix: "sha256=", separator: ","}}`,
		`{name: s, scheme: gitlab, secrets: [env:X], replay: off}`,
	} {
		cfg, err := LoadBytes("<t>", []byte("apiVersion: gatehouse/v1\nauthz: {webhooks: ["+src+"]}\n"), LoadOptions{LookupEnv: func(string) (string, bool) { return "v", true }})
		if err != nil {
			t.Errorf("LoadBytes(%s) = %v; want it valid", src, err)
			continue
		}
		if len(cfg.Warnings) > 0 {
			t.Errorf("LoadBytes(%s) warnings = %v; want none", src, cfg.Warnings)
		}
	}
}
