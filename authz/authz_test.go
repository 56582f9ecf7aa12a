package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	gjwt "github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/kv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is the audit fake: it keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) last(kind audit.Kind) audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == kind {
			return r.events[i]
		}
	}
	return audit.Event{}
}

var (
	keyOnce sync.Once
	testKey *rsa.PrivateKey
	caKey   *ecdsa.PrivateKey
	caCert  *x509.Certificate
	caPEM   string
)

func setupKeys() {
	keyOnce.Do(func() {
		testKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		caKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		caCert, _ = x509.ParseCertificate(der)
		caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	})
}

func leafCert(t testing.TB, spiffeID string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func testJWKS(t testing.TB) string {
	setupKeys()
	j, err := jwkset.NewJWKFromKey(&testKey.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{j.Marshal()}})
	return string(b)
}

func token(t testing.TB, over map[string]any) string {
	setupKeys()
	c := gjwt.MapClaims{"iss": "https://idp.test", "aud": "api", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
		"iat": time.Now().Unix(), "scope": "orders:read", "plan": "gold", "email": "alice@example.com", "groups": []any{"eng", "ops"}}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok := gjwt.NewWithClaims(gjwt.SigningMethodRS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testConfig is the policy most tests decide against.
func testConfig(t testing.TB) string {
	setupKeys()
	return fmt.Sprintf(`apiVersion: gatehouse/v1
authz:
  address: 127.0.0.1:0
  defaultTier: basic
  unmatched:
    action: deny
    hosts: [{hosts: ["open.example.com"], action: allow}]
  jwt:
    issuers:
      - name: idp
        issuer: https://idp.test
        audiences: [api]
        algorithms: [RS256]
        tierClaim: plan
        jwks: '%s'
  apiKeys:
    keys:
      - {id: k-live, hash: "sha256:%s", subject: partner, tier: pro, scopes: [orders:read]}
      - {id: k-old, hash: "sha256:%s", subject: partner, revoked: true}
      - {id: k-expired, hash: "sha256:%s", subject: partner, expiresAt: "2020-01-01T00:00:00Z"}
  mtls:
    trustDomains: [{name: example.org, bundle: %q}]
    verifyCertificate: true
    tiers: [{id: "spiffe://example.org/ns/batch/sa/*", tier: batch}]
  webhooks:
    - {name: gh, scheme: github, secrets: [env:GH_SECRET], maxBodySize: 1KiB}
routes:
  - id: orders
    match: {prefix: /orders}
    authz:
      jwt: {}
      apiKey: {}
      require: {scopes: [orders:read]}
      claimHeaders: [{claim: email, header: x-user-email}]
      stripCredentials: true
  - id: admin
    match: {prefix: /admin}
    authz:
      jwt: {issuers: [idp]}
      require:
        claims: [{claim: groups, contains: admin}]
  - id: internal
    match: {prefix: /internal}
    authz:
      mtls: {}
      require:
        spiffe: {trustDomain: example.org, paths: ["/ns/batch/sa/*"]}
  - id: both
    match: {prefix: /both}
    authz: {mode: all, jwt: {}, mtls: {}}
  - id: office
    match: {prefix: /office}
    authz: {jwt: {}, require: {sourceCIDRs: [10.0.0.0/8]}}
  - id: shadowed
    match: {prefix: /shadow}
    authz: {jwt: {}, shadow: true, require: {scopes: [orders:write]}}
  - id: optional
    match: {prefix: /opt}
    authz: {jwt: {}, optional: true}
  - id: hook
    match: {prefix: /hook}
    authz: {webhook: gh}
  - id: status
    match: {path: /status}
    authz: {public: true}
  - id: nopolicy
    match: {prefix: /nopolicy}
`, testJWKS(t), sha("live-key"), sha("old-key"), sha("expired-key"), caPEM)
}

// algToken signs the standard claims with any method, for the attacks.
func algToken(t testing.TB, m gjwt.SigningMethod, key any, kid string) string {
	setupKeys()
	tok := gjwt.NewWithClaims(m, gjwt.MapClaims{"iss": "https://idp.test", "aud": "api", "sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publicPEM() []byte {
	setupKeys()
	der, _ := x509.MarshalPKIXPublicKey(&testKey.PublicKey)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newServer(t testing.TB, yaml string, store kv.Store) (*Server, *recorder, *prometheus.Registry) {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(yaml), config.LoadOptions{LookupEnv: func(k string) (string, bool) {
		if k == "GH_SECRET" {
			return "gh-secret", true
		}
		return "", false
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(cfg); err != nil {
		// Warnings alone (an expiring trust bundle) do not stop a config.
		var es config.Errors
		if !errors.As(err, &es) || es.HasErrors() {
			t.Fatal(err)
		}
	}
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	if store == nil {
		store = kv.NewMemory(0)
	}
	s, err := New(cfg, component.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: reg, KV: store, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, rec, reg
}

// check builds a CheckRequest shaped as Envoy sends it.
type check struct {
	route, method, path, host string
	headers                   map[string]string
	body                      string
	source, principal, cert   string
}

func (c check) request() *authv3.CheckRequest {
	if c.method == "" {
		c.method = "GET"
	}
	if c.host == "" {
		c.host = "api.example.com"
	}
	if c.source == "" {
		c.source = "192.0.2.10"
	}
	h := map[string]string{":method": c.method, ":path": c.path, ":authority": c.host, "x-request-id": "req-1"}
	for k, v := range c.headers {
		h[k] = v
	}
	hr := &authv3.AttributeContext_HttpRequest{Method: c.method, Path: c.path, Host: c.host, Headers: h, Protocol: "HTTP/1.1"}
	if c.body != "" {
		hr.RawBody = []byte(c.body)
	}
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:     &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: c.source}}},
			Principal:   c.principal,
			Certificate: c.cert,
		},
		Request: &authv3.AttributeContext_Request{Http: hr},
	}}
	if c.route != "" {
		cr.Attributes.ContextExtensions = map[string]string{contract.ContextExtensionRoute: c.route}
	}
	return cr
}

func status(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	return 200
}

func header(hs []*corev3.HeaderValueOption, k string) (string, bool) {
	for _, h := range hs {
		if h.GetHeader().GetKey() == k {
			return h.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// checkWire calls Check and passes the response through the wire, as
// gRPC does: what Envoy decodes is what is checked.
func checkWire(t testing.TB, s *Server, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := s.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check error = %v", err)
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var out authv3.CheckResponse
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("the response holds fields Envoy does not know: %x", out.ProtoReflect().GetUnknown())
	}
	return &out
}

// TestWireMetadata: the pre-encoded dynamic metadata of a served response
// decodes to exactly what the structured response holds.
func TestWireMetadata(t *testing.T) {
	s, _, _ := newServer(t, testConfig(t), nil)
	for _, req := range []*authv3.CheckRequest{
		check{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer " + token(t, nil)}}.request(),
		check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "live-key"}}.request(),
		check{route: "optional", path: "/opt"}.request(),
	} {
		served := checkWire(t, s, req)
		explained := s.Explain(context.Background(), req).Response
		id := served.GetDynamicMetadata().GetFields()[contract.MetaDecisionID].GetStringValue()
		explained.GetDynamicMetadata().GetFields()[contract.MetaDecisionID] = structpb.NewStringValue(id)
		explained.GetOkResponse().GetResponseHeadersToAdd()[0].GetHeader().Value = id
		if diff := cmp.Diff(explained, served, protocmp.Transform()); diff != "" {
			t.Errorf("served response differs from the structured one (-structured +served):\n%s", diff)
		}
	}
}

func TestDecisions(t *testing.T) {
	s, rec, _ := newServer(t, testConfig(t), nil)
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }
	sig := func(body string) map[string]string {
		m := hmac.New(sha256.New, []byte("gh-secret"))
		m.Write([]byte(body))
		return map[string]string{"x-hub-signature-256": "sha256=" + hex.EncodeToString(m.Sum(nil))}
	}
	batchCert := leafCert(t, "spiffe://example.org/ns/batch/sa/job")
	webCert := leafCert(t, "spiffe://example.org/ns/web/sa/app")
	tests := []struct {
		name       string
		req        *authv3.CheckRequest
		wantStatus int
		wantReason string // audit reason code
		wantPublic string // body reason ("" for allow)
		wantAuth   string // WWW-Authenticate ("" = none expected)
		wantTier   string
		decision   string
	}{
		{"jwt allowed", check{route: "orders", path: "/orders/1", headers: bearer(token(t, nil))}.request(), 200, "allowed", "", "", "gold", "allow"},
		{"api key allowed", check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "live-key"}}.request(), 200, "allowed", "", "", "pro", "allow"},
		{"route by matching, no route id", check{path: "/orders/9?x=1", headers: bearer(token(t, nil))}.request(), 200, "allowed", "", "", "gold", "allow"},
		{"no credentials", check{route: "orders", path: "/orders"}.request(), 401, "credentials_missing", "credentials_missing", `Bearer realm="gatehouse", APIKey realm="gatehouse"`, "", "deny"},
		{"garbage token", check{route: "orders", path: "/orders", headers: bearer("garbage")}.request(), 401, "token_malformed", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"oversized token", check{route: "orders", path: "/orders", headers: bearer(strings.Repeat("a", 9000))}.request(), 401, "token_too_large", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"expired token", check{route: "orders", path: "/orders", headers: bearer(token(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))}.request(), 401, "token_expired", "token_expired", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"future token", check{route: "orders", path: "/orders", headers: bearer(token(t, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()}))}.request(), 401, "token_not_yet_valid", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"alg none", check{route: "orders", path: "/orders", headers: bearer(algToken(t, gjwt.SigningMethodNone, gjwt.UnsafeAllowNoneSignatureType, "k1"))}.request(), 401, "token_alg_not_allowed", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"HS256 signed with the public key", check{route: "orders", path: "/orders", headers: bearer(algToken(t, gjwt.SigningMethodHS256, publicPEM(), "k1"))}.request(), 401, "token_alg_not_allowed", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"unknown kid", check{route: "orders", path: "/orders", headers: bearer(algToken(t, gjwt.SigningMethodRS256, testKey, "k9"))}.request(), 401, "token_unknown_kid", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"unknown issuer", check{route: "orders", path: "/orders", headers: bearer(token(t, map[string]any{"iss": "https://evil.test"}))}.request(), 401, "token_issuer_unknown", "invalid_token", `Bearer realm="gatehouse", error="invalid_token", APIKey realm="gatehouse"`, "", "deny"},
		{"duplicated authorization header", check{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer a,Bearer b"}}.request(), 400, "credentials_ambiguous", "credentials_ambiguous", "", "", "deny"},
		{"missing scope", check{route: "orders", path: "/orders", headers: bearer(token(t, map[string]any{"scope": "profile"}))}.request(), 403, "scope_missing", "insufficient_scope", `Bearer realm="gatehouse", error="insufficient_scope", scope="orders:read", APIKey realm="gatehouse"`, "", "deny"},
		{"unknown api key", check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "guess"}}.request(), 401, "apikey_unknown", "invalid_api_key", `Bearer realm="gatehouse", APIKey realm="gatehouse"`, "", "deny"},
		{"revoked api key", check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "old-key"}}.request(), 401, "apikey_revoked", "invalid_api_key", `Bearer realm="gatehouse", APIKey realm="gatehouse"`, "", "deny"},
		{"expired api key", check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "expired-key"}}.request(), 401, "apikey_expired", "api_key_expired", `Bearer realm="gatehouse", APIKey realm="gatehouse"`, "", "deny"},
		{"claim matches", check{route: "admin", path: "/admin", headers: bearer(token(t, map[string]any{"groups": []any{"admin"}}))}.request(), 200, "allowed", "", "", "gold", "allow"},
		{"claim mismatch", check{route: "admin", path: "/admin", headers: bearer(token(t, nil))}.request(), 403, "claim_mismatch", "forbidden", "", "", "deny"},
		{"spiffe allowed", check{route: "internal", path: "/internal", cert: batchCert}.request(), 200, "allowed", "", "", "batch", "allow"},
		{"spiffe not allowed", check{route: "internal", path: "/internal", cert: webCert}.request(), 403, "spiffe_not_allowed", "forbidden", "", "", "deny"},
		{"no client certificate", check{route: "internal", path: "/internal"}.request(), 403, "mtls_missing", "client_certificate_required", "", "", "deny"},
		{"malformed PEM", check{route: "internal", path: "/internal", cert: "-----BEGIN%20CERTIFICATE-----%0Azzz"}.request(), 403, "mtls_invalid", "invalid_client_certificate", "", "", "deny"},
		{"mode all passes", check{route: "both", path: "/both", cert: batchCert, headers: bearer(token(t, nil))}.request(), 200, "allowed", "", "", "gold", "allow"},
		{"mode all, one missing", check{route: "both", path: "/both", headers: bearer(token(t, nil))}.request(), 403, "mtls_missing", "client_certificate_required", "", "", "deny"},
		{"source allowed", check{route: "office", path: "/office", source: "10.1.1.1", headers: bearer(token(t, nil))}.request(), 200, "allowed", "", "", "gold", "allow"},
		{"source not allowed", check{route: "office", path: "/office", headers: bearer(token(t, nil))}.request(), 403, "source_not_allowed", "forbidden", "", "", "deny"},
		{"shadow would deny", check{route: "shadowed", path: "/shadow", headers: bearer(token(t, nil))}.request(), 200, "scope_missing", "", "", "gold", "would_deny"},
		{"shadow, no credential", check{route: "shadowed", path: "/shadow"}.request(), 200, "credentials_missing", "", "", "anonymous", "would_deny"},
		{"optional, anonymous", check{route: "optional", path: "/opt"}.request(), 200, "anonymous", "", "", "anonymous", "allow"},
		{"optional, bad token still refused", check{route: "optional", path: "/opt", headers: bearer("x.y.z")}.request(), 401, "token_malformed", "invalid_token", `Bearer realm="gatehouse", error="invalid_token"`, "", "deny"},
		{"public route reached without route id", check{path: "/status"}.request(), 200, "public", "", "", "anonymous", "allow"},
		{"route without policy", check{route: "nopolicy", path: "/nopolicy"}.request(), 403, "no_policy", "forbidden", "", "", "deny"},
		{"unknown route id", check{route: "ghost", path: "/"}.request(), 403, "no_route", "no_route", "", "", "deny"},
		{"unmatched, host denied", check{path: "/nothing"}.request(), 403, "no_route", "no_route", "", "", "deny"},
		{"unmatched, host allowed", check{path: "/nothing", host: "open.example.com:8443"}.request(), 200, "unmatched_allowed", "", "", "anonymous", "allow"},
		{"webhook signed", check{route: "hook", method: "POST", path: "/hook", body: `{"a":1}`, headers: sig(`{"a":1}`)}.request(), 200, "allowed", "", "", "basic", "allow"},
		{"webhook replayed", check{route: "hook", method: "POST", path: "/hook", body: `{"a":1}`, headers: sig(`{"a":1}`)}.request(), 409, "webhook_replayed", "replayed", "", "", "deny"},
		{"webhook missing signature", check{route: "hook", method: "POST", path: "/hook", body: `{}`}.request(), 401, "webhook_signature_missing", "invalid_signature", `Signature realm="gatehouse"`, "", "deny"},
		{"webhook huge body", check{route: "hook", method: "POST", path: "/hook", body: strings.Repeat("x", 2000), headers: sig(strings.Repeat("x", 2000))}.request(), 413, "webhook_body_too_large", "body_too_large", "", "", "deny"},
		{"webhook body not sent", check{route: "hook", method: "POST", path: "/hook", headers: map[string]string{"content-length": "10", "x-hub-signature-256": "sha256=" + strings.Repeat("0", 64)}}.request(), 400, "webhook_body_missing", "body_required", "", "", "deny"},
		{"CheckRequest without attributes", &authv3.CheckRequest{}, 400, "request_malformed", "bad_request", "", "", "deny"},
		{"CheckRequest without http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, 400, "request_malformed", "bad_request", "", "", "deny"},
		{"CheckRequest without path", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET"}}}}, 400, "request_malformed", "bad_request", "", "", "deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := checkWire(t, s, tt.req)
			if err := resp.ValidateAll(); err != nil {
				t.Errorf("Check(%s) response does not validate: %v", tt.name, err)
			}
			ev := rec.last(audit.KindDecision)
			if got := status(resp); got != tt.wantStatus || ev.Reason != tt.wantReason || ev.Decision != tt.decision {
				t.Fatalf("Check(%s) = %d %s %s; want %d %s %s", tt.name, got, ev.Decision, ev.Reason, tt.wantStatus, tt.decision, tt.wantReason)
			}
			if d := resp.GetDeniedResponse(); d != nil {
				var body map[string]string
				if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil || body["reason"] != tt.wantPublic || body["request_id"] != "req-1" && tt.req.GetAttributes().GetRequest().GetHttp().GetHeaders() != nil {
					t.Errorf("Check(%s) body = %s (%v); want reason %q", tt.name, d.GetBody(), err, tt.wantPublic)
				}
				got, _ := header(d.GetHeaders(), "www-authenticate")
				if got != tt.wantAuth {
					t.Errorf("Check(%s) WWW-Authenticate = %q; want %q", tt.name, got, tt.wantAuth)
				}
				if id, _ := header(d.GetHeaders(), contract.HeaderDecisionID); id == "" || id != ev.ID {
					t.Errorf("Check(%s) decision id header %q, audit id %q; want equal and set", tt.name, id, ev.ID)
				}
				return
			}
			ok := resp.GetOkResponse()
			if tier, _ := header(ok.GetHeaders(), contract.HeaderTier); tier != tt.wantTier || ev.Tier != tt.wantTier {
				t.Errorf("Check(%s) tier header %q, audit %q; want %q", tt.name, tier, ev.Tier, tt.wantTier)
			}
			if md := resp.GetDynamicMetadata().GetFields(); md[contract.MetaTier].GetStringValue() != tt.wantTier || md[contract.MetaDecisionID].GetStringValue() != ev.ID {
				t.Errorf("Check(%s) metadata = %v; want tier %q and the decision id", tt.name, md, tt.wantTier)
			}
			if id, _ := header(ok.GetResponseHeadersToAdd(), contract.HeaderDecisionID); id != ev.ID {
				t.Errorf("Check(%s) decision id to client %q; audit %q", tt.name, id, ev.ID)
			}
		})
	}
}

// TestIdentityHeadersOverwrite: identity headers replace client copies,
// the ones not set are removed, credentials are stripped, and the audit
// line holds the identity but never the token.
func TestIdentityHeadersOverwrite(t *testing.T) {
	s, rec, _ := newServer(t, testConfig(t), nil)
	tok := token(t, nil)
	resp := checkWire(t, s, check{route: "orders", path: "/orders?secret=1", headers: map[string]string{
		"authorization": "Bearer " + tok, contract.HeaderSubject: "root", contract.HeaderTier: "enterprise", contract.HeaderSPIFFEID: "spiffe://evil/x",
	}}.request())
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("Check = %v; want allowed", resp)
	}
	want := map[string]string{contract.HeaderSubject: "alice", contract.HeaderTier: "gold", contract.HeaderIssuer: "https://idp.test",
		contract.HeaderAuthMethod: "jwt", contract.HeaderScopes: "orders:read", contract.HeaderRoute: "orders", "x-user-email": "alice@example.com"}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s append action = %v; want OVERWRITE_IF_EXISTS_OR_ADD", h.GetHeader().GetKey(), h.GetAppendAction())
		}
	}
	for k, v := range want {
		if got, _ := header(ok.GetHeaders(), k); got != v {
			t.Errorf("upstream %s = %q; want %q", k, got, v)
		}
	}
	for _, k := range []string{contract.HeaderSPIFFEID, contract.HeaderDecisionID, "authorization", "x-api-key"} {
		if !slices.Contains(ok.GetHeadersToRemove(), k) {
			t.Errorf("headers_to_remove = %v; want %s in it", ok.GetHeadersToRemove(), k)
		}
	}
	ev := rec.last(audit.KindDecision)
	line, _ := json.Marshal(ev)
	if strings.Contains(string(line), tok[:20]) || strings.Contains(string(line), "secret=1") {
		t.Errorf("audit line holds the token or the query string: %s", line)
	}
	if ev.Subject != "alice" || ev.Issuer != "https://idp.test" || ev.AuthMethod != "jwt" || ev.Path != "/orders" || ev.Route != "orders" ||
		ev.ClientAddr != "192.0.2.10" || ev.Method != "GET" || ev.RequestID != "req-1" || ev.PolicyVersion == "" {
		t.Errorf("audit event = %+v", ev)
	}
}

func TestWebhookAuditAndMetrics(t *testing.T) {
	s, rec, reg := newServer(t, testConfig(t), nil)
	_, _ = s.Check(context.Background(), check{route: "hook", method: "POST", path: "/hook", body: "{}", headers: map[string]string{"x-hub-signature-256": "sha256=" + strings.Repeat("0", 64)}}.request())
	ev := rec.last(audit.KindWebhook)
	if ev.Subject != "gh" || ev.Decision != "deny" || ev.Reason != "webhook_signature_invalid" || ev.Route != "hook" {
		t.Errorf("webhook audit event = %+v", ev)
	}
	if got := testutil.ToFloat64(s.metrics.decisions.WithLabelValues("hook", "deny", "webhook_signature_invalid")); got != 1 {
		t.Errorf("decisions{hook,deny,webhook_signature_invalid} = %v; want 1", got)
	}
	_, _ = s.Check(context.Background(), check{route: "shadowed", path: "/shadow"}.request())
	if got := testutil.ToFloat64(s.metrics.decisions.WithLabelValues("shadowed", "would_deny", "credentials_missing")); got != 1 {
		t.Errorf("decisions{shadowed,would_deny,credentials_missing} = %v; want 1", got)
	}
	n, err := testutil.GatherAndCount(reg, "gatehouse_authz_token_cache_total", "gatehouse_authz_jwks_up", "gatehouse_authz_check_duration_seconds")
	if err != nil || n == 0 {
		t.Errorf("gather = %d, %v; want the cache, JWKS and latency metrics", n, err)
	}
}

func TestExplain(t *testing.T) {
	s, rec, _ := newServer(t, testConfig(t), nil)
	x := s.Explain(context.Background(), check{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer " + token(t, map[string]any{"scope": "x"})}}.request())
	if x.Decision != "deny" || x.Reason != "scope_missing" || x.Status != 403 || len(x.Steps) < 3 {
		t.Errorf("Explain = %+v", x)
	}
	if len(rec.events) != 0 {
		t.Errorf("Explain recorded %d audit events; want none", len(rec.events))
	}
}
