// Package authz_test runs gatehouse's ext_authz end to end: the real
// serve runtime on 127.0.0.1, real gRPC clients sending CheckRequests
// shaped as Envoy sends them, a local JWKS endpoint, real Redis shared by
// two instances, and the audit lines the runtime writes.
package authz_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	gjwt "github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

// syncBuffer collects what the runtime writes to stdout (audit lines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) events(t testing.TB) []audit.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

type instance struct {
	client authv3.AuthorizationClient
	admin  string
	stdout *syncBuffer
}

// start serves cfg (authz only) until the test ends.
func start(t *testing.T, cfg string, env map[string]string) *instance {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := app.Start(ctx, app.Options{
		ConfigPath: path, Components: []string{"authz"}, Stdout: out, Stderr: io.Discard,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	conn, err := grpc.NewClient(rt.Addr("authz"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("runtime did not stop")
		}
	})
	return &instance{client: authv3.NewAuthorizationClient(conn), admin: rt.AdminAddr(), stdout: out}
}

func (in *instance) check(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := in.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func fixture(t *testing.T, name string, repl ...string) *authv3.CheckRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.NewReplacer(repl...).Replace(string(b)))
	var req authv3.CheckRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if err := req.ValidateAll(); err != nil {
		t.Fatalf("fixture %s is not a valid CheckRequest: %v", name, err)
	}
	return &req
}

func headerOf(resp *authv3.CheckResponse, name string) string {
	hs := resp.GetOkResponse().GetHeaders()
	if d := resp.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	}
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func statusOf(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	return 200
}

// idp is a local identity provider: a JWKS endpoint and a key.
type idp struct {
	key *rsa.PrivateKey
	srv *httptest.Server
	mu  sync.Mutex
	up  bool
}

func newIDP(t *testing.T) *idp {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	p := &idp{key: key, up: true}
	j, _ := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "e2e", ALG: jwkset.AlgRS256}})
	doc, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{j.Marshal()}})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(doc)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) token(t *testing.T, claims gjwt.MapClaims) string {
	base := gjwt.MapClaims{"iss": "https://idp.e2e", "aud": "orders-api", "sub": "carol", "plan": "pro", "scope": "orders:read",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	tok := gjwt.NewWithClaims(gjwt.SigningMethodRS256, base)
	tok.Header["kid"] = "e2e"
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func config(jwksURL, redisBlock string) string {
	return fmt.Sprintf(`apiVersion: gatehouse/v1
server:
  admin: {address: 127.0.0.1:0}
  shutdownTimeout: 5s
%s
audit: {stdout: true}
authz:
  address: 127.0.0.1:0
  jwt:
    issuers:
      - name: e2e
        issuer: https://idp.e2e
        audiences: [orders-api]
        algorithms: [RS256]
        jwksURL: %s
        tierClaim: plan
  webhooks:
    - {name: github, scheme: github, secrets: [env:GH_SECRET], subject: github-app}
routes:
  - id: orders
    match: {prefix: /orders}
    authz: {jwt: {issuers: [e2e]}, require: {scopes: [orders:read]}}
  - id: github
    match: {prefix: /github}
    authz: {webhook: github}
`, redisBlock, jwksURL)
}

func ready(t *testing.T, admin string) int {
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

func waitReady(t *testing.T, admin string) {
	deadline := time.Now().Add(15 * time.Second)
	for ready(t, admin) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("authz never became ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckOverGRPC(t *testing.T) {
	p := newIDP(t)
	in := start(t, config(p.srv.URL, ""), map[string]string{"GH_SECRET": "e2e-secret"})
	waitReady(t, in.admin)

	tok := p.token(t, nil)
	resp := in.check(t, fixture(t, "envoy_check_jwt.json", "{{TOKEN}}", tok))
	if statusOf(resp) != 200 || headerOf(resp, contract.HeaderSubject) != "carol" || headerOf(resp, contract.HeaderTier) != "pro" {
		t.Fatalf("Check(valid token) = %v; want allowed as carol, tier pro", resp)
	}
	decisionID := headerOf(resp, contract.HeaderDecisionID)
	if md := resp.GetDynamicMetadata().GetFields(); md[contract.MetaTier].GetStringValue() != "pro" || md[contract.MetaSubject].GetStringValue() != "carol" {
		t.Errorf("dynamic metadata = %v", md)
	}

	// The JWKS endpoint goes down: cached keys still verify a new token.
	p.mu.Lock()
	p.up = false
	p.mu.Unlock()
	resp = in.check(t, fixture(t, "envoy_check_jwt.json", "{{TOKEN}}", p.token(t, gjwt.MapClaims{"sub": "dave"})))
	if statusOf(resp) != 200 {
		t.Errorf("Check(new token while JWKS down) = %d; want 200 from cached keys", statusOf(resp))
	}

	bad := in.check(t, fixture(t, "envoy_check_jwt.json", "{{TOKEN}}", tok[:len(tok)-4]+"AAAA"))
	if statusOf(bad) != 401 || !strings.Contains(headerOf(bad, "www-authenticate"), `error="invalid_token"`) {
		t.Errorf("Check(bad signature) = %v; want 401 invalid_token", bad)
	}

	hook := in.check(t, fixture(t, "envoy_check_webhook.json"))
	if statusOf(hook) != 200 || headerOf(hook, contract.HeaderSubject) != "github-app" {
		t.Errorf("Check(GitHub delivery) = %v; want allowed as github-app", hook)
	}
	again := in.check(t, fixture(t, "envoy_check_webhook.json"))
	if statusOf(again) != 409 {
		t.Errorf("Check(same delivery again) = %d; want 409", statusOf(again))
	}

	// Audit: every decision is a line; the first carries the id the
	// client saw, the path without its query, and never the token.
	deadline := time.Now().Add(5 * time.Second)
	var events []audit.Event
	for time.Now().Before(deadline) {
		if events = in.stdout.events(t); len(events) >= 7 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var first *audit.Event
	for i := range events {
		if events[i].ID == decisionID && events[i].Kind == audit.KindDecision {
			first = &events[i]
		}
	}
	if first == nil {
		t.Fatalf("no audit line with decision id %s in %d lines", decisionID, len(events))
	}
	if first.Decision != "allow" || first.Reason != "allowed" || first.Subject != "carol" || first.Path != "/orders/7" ||
		first.RequestID != "0d1f6a9c-4b8e-4a52-8d1e-7c0d3b5e9a21" || first.ClientAddr != "203.0.113.9" || first.PolicyVersion == "" {
		t.Errorf("audit line = %+v", first)
	}
	in.stdout.mu.Lock()
	raw := in.stdout.b.String()
	in.stdout.mu.Unlock()
	if strings.Contains(raw, tok[10:40]) || strings.Contains(raw, "expand=items") || strings.Contains(raw, "installation=42") {
		t.Error("audit lines hold a token or a query string")
	}
	kinds := map[audit.Kind]int{}
	for _, e := range events {
		kinds[e.Kind]++
	}
	if kinds[audit.KindWebhook] != 2 {
		t.Errorf("webhook audit lines = %d; want 2", kinds[audit.KindWebhook])
	}
}

// TestNotReadyUntilKeysLoad: /readyz fails while an issuer's key set has
// never loaded, and a Check is answered 503 jwks_unavailable meanwhile.
func TestNotReadyUntilKeysLoad(t *testing.T) {
	p := newIDP(t)
	p.mu.Lock()
	p.up = false
	p.mu.Unlock()
	in := start(t, config(p.srv.URL, ""), map[string]string{"GH_SECRET": "x"})
	if code := ready(t, in.admin); code == 200 {
		t.Fatalf("/readyz = %d with the JWKS never loaded; want not ready", code)
	}
	resp := in.check(t, fixture(t, "envoy_check_jwt.json", "{{TOKEN}}", p.token(t, nil)))
	if statusOf(resp) != 503 {
		t.Errorf("Check(keys never loaded) = %d; want 503", statusOf(resp))
	}
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
	waitReady(t, in.admin) // the retry with backoff picks the endpoint up
}

// TestReplayGuardAcrossReplicas: two gatehouse instances sharing one real
// Redis; a delivery accepted by one is refused by the other.
func TestReplayGuardAcrossReplicas(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.KeyPrefix(t)
	p := newIDP(t)
	block := fmt.Sprintf("redis: {addresses: [%q], keyPrefix: %q}", addr, prefix)
	a := start(t, config(p.srv.URL, block), map[string]string{"GH_SECRET": "e2e-secret"})
	b := start(t, config(p.srv.URL, block), map[string]string{"GH_SECRET": "e2e-secret"})
	if resp := a.check(t, fixture(t, "envoy_check_webhook.json")); statusOf(resp) != 200 {
		t.Fatalf("replica a: Check(delivery) = %v; want allowed", resp)
	}
	resp := b.check(t, fixture(t, "envoy_check_webhook.json"))
	if statusOf(resp) != 409 {
		t.Fatalf("replica b: Check(same delivery) = %d; want 409 replayed", statusOf(resp))
	}
	var body map[string]string
	_ = json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body)
	if body["reason"] != "replayed" || body["request_id"] != "5c1b4a5e-0d52-4c65-9e0a-2f4f1f6b1c11" {
		t.Errorf("deny body = %v", body)
	}
}

// TestWebhookProvidersOverGRPC: Twilio and GitLab deliveries, shaped as
// Envoy sends them, through the real serve runtime: Twilio's published
// example verifies against the URL Envoy saw, and not under another host;
// GitLab's token is checked without a body and stripped before the
// upstream; both are audited as webhook verifications.
func TestWebhookProvidersOverGRPC(t *testing.T) {
	in := start(t, `apiVersion: gatehouse/v1
server:
  admin: {address: 127.0.0.1:0}
  shutdownTimeout: 5s
audit: {stdout: true}
authz:
  address: 127.0.0.1:0
  webhooks:
    - {name: twilio, scheme: twilio, secrets: [env:TWILIO_AUTH_TOKEN], maxBodySize: 64KiB, subject: twilio}
    - {name: gitlab, scheme: gitlab, secrets: [env:GITLAB_TOKEN], subject: gitlab}
routes:
  - id: twilio
    match: {prefix: /myapp.php}
    authz: {webhook: twilio}
  - id: gitlab
    match: {prefix: /gitlab}
    authz: {webhook: gitlab, stripCredentials: true}
`, map[string]string{"TWILIO_AUTH_TOKEN": "12345", "GITLAB_TOKEN": "gl-hook-secret"})
	waitReady(t, in.admin)

	resp := in.check(t, fixture(t, "envoy_check_twilio.json", "{{HOST}}", "mycompany.com"))
	if statusOf(resp) != 200 || headerOf(resp, contract.HeaderSubject) != "twilio" {
		t.Errorf("Check(Twilio's example) = %v; want allowed as twilio", resp)
	}
	// Twilio signs no timestamp or id: the same request again is allowed
	// (replay: auto is off for twilio).
	if resp := in.check(t, fixture(t, "envoy_check_twilio.json", "{{HOST}}", "mycompany.com")); statusOf(resp) != 200 {
		t.Errorf("Check(Twilio's example again) = %d; want 200", statusOf(resp))
	}
	if resp := in.check(t, fixture(t, "envoy_check_twilio.json", "{{HOST}}", "other.example")); statusOf(resp) != 401 {
		t.Errorf("Check(Twilio's example under another host) = %d; want 401", statusOf(resp))
	}

	resp = in.check(t, fixture(t, "envoy_check_gitlab.json", "{{TOKEN}}", "gl-hook-secret"))
	if statusOf(resp) != 200 || headerOf(resp, contract.HeaderSubject) != "gitlab" {
		t.Fatalf("Check(GitLab hook) = %v; want allowed as gitlab", resp)
	}
	if removed := resp.GetOkResponse().GetHeadersToRemove(); !slices.Contains(removed, "x-gitlab-token") {
		t.Errorf("headers_to_remove = %q; want x-gitlab-token (stripCredentials)", removed)
	}
	if resp := in.check(t, fixture(t, "envoy_check_gitlab.json", "{{TOKEN}}", "gl-hook-secreT")); statusOf(resp) != 401 {
		t.Errorf("Check(GitLab hook, wrong token) = %d; want 401", statusOf(resp))
	}

	deadline := time.Now().Add(5 * time.Second)
	var hooks []audit.Event
	for time.Now().Before(deadline) {
		hooks = hooks[:0]
		for _, e := range in.stdout.events(t) {
			if e.Kind == audit.KindWebhook {
				hooks = append(hooks, e)
			}
		}
		if len(hooks) >= 5 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	reasons := map[string]int{}
	for _, e := range hooks {
		reasons[e.Subject+" "+e.Reason]++
	}
	want := map[string]int{"twilio allowed": 2, "twilio webhook_signature_invalid": 1, "gitlab allowed": 1, "gitlab webhook_signature_invalid": 1}
	if !maps.Equal(reasons, want) {
		t.Errorf("webhook audit lines = %v; want %v", reasons, want)
	}
	in.stdout.mu.Lock()
	raw := in.stdout.b.String()
	in.stdout.mu.Unlock()
	if strings.Contains(raw, "gl-hook-secret") || strings.Contains(raw, "GvWf1cFY") || strings.Contains(raw, "foo=1") {
		t.Error("audit lines hold a token, a signature or a query string")
	}
}
