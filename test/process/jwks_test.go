package process

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	gjwt "github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// signer is one key of an identity provider, by kid.
type signer struct {
	kid string
	key *rsa.PrivateKey
}

func newSigner(t *testing.T, kid string) signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: key}
}

func (s signer) token(t *testing.T, iss string) string {
	t.Helper()
	tok := gjwt.NewWithClaims(gjwt.SigningMethodRS256, gjwt.MapClaims{"iss": iss, "aud": "api", "sub": "dana",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwksOf renders the signers' public keys as a JWKS document.
func jwksOf(t *testing.T, signers ...signer) string {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, s := range signers {
		j, err := jwkset.NewJWKFromKey(&s.key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: s.kid, ALG: jwkset.AlgRS256}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, _ := json.Marshal(set)
	return string(b)
}

// jwksEndpoint is an identity provider's JWKS endpoint on 127.0.0.1 that
// the test rotates and empties.
type jwksEndpoint struct {
	*httptest.Server
	mu  sync.Mutex
	doc string
}

func newJWKSEndpoint(t *testing.T, doc string) *jwksEndpoint {
	e := &jwksEndpoint{doc: doc}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.mu.Lock()
		doc := e.doc
		e.mu.Unlock()
		_, _ = io.WriteString(w, doc)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *jwksEndpoint) publish(doc string) {
	e.mu.Lock()
	e.doc = doc
	e.mu.Unlock()
}

// writeFile replaces a file by rename, as editors and ConfigMaps do.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type authzClient struct {
	c authv3.AuthorizationClient
}

func dialAuthz(t *testing.T, addr string) authzClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return authzClient{authv3.NewAuthorizationClient(cc)}
}

// status is the HTTP status Envoy would answer a request bearing tok with.
func (a authzClient) status(t *testing.T, tok string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := a.c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/orders", Host: "api.example.com",
			Headers: map[string]string{":method": "GET", ":path": "/orders", ":authority": "api.example.com", "authorization": "Bearer " + tok},
		}},
		ContextExtensions: map[string]string{"route": "orders"},
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	return 200
}

// TestJWTKeyLifecycle runs the key lifecycle through the real binary:
// an edited jwksFile applied by SIGHUP, a revoked remote key dropped by
// SIGHUP's refetch and by the admin refresh endpoint, and an emptied JWKS
// refused while the last good keys keep serving.
func TestJWTKeyLifecycle(t *testing.T) {
	a, b := newSigner(t, "file-a"), newSigner(t, "file-b")
	c, d, e := newSigner(t, "remote-c"), newSigner(t, "remote-d"), newSigner(t, "remote-e")
	remote := newJWKSEndpoint(t, jwksOf(t, c, d, e))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys.jwks.json")
	writeFile(t, keyFile, jwksOf(t, a))
	path := filepath.Join(dir, "gatehouse.yaml")
	// The file watcher would also reload on the key file's change; its
	// debounce is long so that SIGHUP is what applies it here.
	writeFile(t, path, fmt.Sprintf(`apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  shutdownTimeout: 3s
  reloadDebounce: 10m
audit: {stdout: true}
authz:
  address: "127.0.0.1:0"
  jwt:
    issuers:
      - {name: files, issuer: https://files.test, audiences: [api], algorithms: [RS256], jwksFile: keys.jwks.json}
      - {name: remote, issuer: https://remote.test, audiences: [api], algorithms: [RS256], jwksURL: %q, refreshInterval: 1h}
routes:
  - id: orders
    match: {prefix: /orders}
    authz: {jwt: {}}
`, remote.URL))
	p := serve(t, path)
	authzLine := p.waitLog(t, "authz serving", func(m map[string]any) bool { return m["msg"] == "serving" && m["component"] == "authz" })
	adminLine := p.waitLog(t, "admin serving", func(m map[string]any) bool { return m["msg"] == "serving" && m["component"] == "admin" })
	admin := "http://" + adminLine["address"].(string)
	p.waitLog(t, "started", msgIs("gatehouse started"))
	az := dialAuthz(t, authzLine["address"].(string))
	waitFor(t, "readiness", func() bool { return get(t, admin+"/readyz") == 200 })

	tokA, tokB := a.token(t, "https://files.test"), b.token(t, "https://files.test")
	tokC, tokD, tokE := c.token(t, "https://remote.test"), d.token(t, "https://remote.test"), e.token(t, "https://remote.test")
	for _, tt := range []struct {
		name string
		tok  string
		want int
	}{{"file key a", tokA, 200}, {"file key b", tokB, 401}, {"remote key c", tokC, 200}, {"remote key d", tokD, 200}} {
		if got := az.status(t, tt.tok); got != tt.want {
			t.Fatalf("at start: Check(%s) = %d; want %d", tt.name, got, tt.want)
		}
	}

	// 1. The key file is edited (a rotated out, b in) and SIGHUP reloads.
	writeFile(t, keyFile, jwksOf(t, b))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "applied reload", msgIs("config reloaded"))
	if got := az.status(t, tokA); got != 401 {
		t.Errorf("after editing the key file and SIGHUP: Check(key a, removed) = %d; want 401", got)
	}
	if got := az.status(t, tokB); got != 200 {
		t.Errorf("after editing the key file and SIGHUP: Check(key b, added) = %d; want 200", got)
	}

	// 2. The issuer revokes c. Its refresh interval is an hour; SIGHUP
	// (the config unchanged) refetches now, and c's cached verification
	// goes with it.
	remote.publish(jwksOf(t, d, e))
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "refetch requested", msgIs("jwks refresh requested"))
	waitFor(t, "SIGHUP's refetch to drop key c", func() bool { return az.status(t, tokC) == 401 })

	// 3. The issuer revokes d; the admin endpoint refetches before it
	// answers.
	remote.publish(jwksOf(t, e))
	if code, body := post(t, admin+"/authz/jwks/refresh"); code != 200 || !strings.Contains(body, `"ok": true`) {
		t.Fatalf("POST /authz/jwks/refresh = %d %s; want 200", code, body)
	}
	if got := az.status(t, tokD); got != 401 {
		t.Errorf("after POST /authz/jwks/refresh: Check(key d, revoked) = %d; want 401", got)
	}

	// 4. The endpoint answers 200 with no keys: refused, e keeps
	// verifying, the failure is counted, and readiness holds (an
	// identity provider's outage must not take every replica out).
	remote.publish(`{"keys":[]}`)
	if code, body := post(t, admin+"/authz/jwks/refresh"); code != 502 || !strings.Contains(body, "the JWKS holds no keys") {
		t.Fatalf("POST /authz/jwks/refresh (empty JWKS) = %d %s; want 502 saying why", code, body)
	}
	if got := az.status(t, tokE); got != 200 {
		t.Errorf("after an empty JWKS: Check(key e) = %d; want 200 from the last good set", got)
	}
	if m := body(t, admin+"/metrics"); !strings.Contains(m, `gatehouse_authz_jwks_fetch_errors_total{issuer="remote",reason="no_usable_key"} 1`) {
		t.Errorf("/metrics lacks the no_usable_key failure")
	}
	if got := get(t, admin+"/readyz"); got != 200 {
		t.Errorf("/readyz after a refused refresh = %d; want 200 (the last good keys serve)", got)
	}

	p.stop(t)
	for _, want := range []string{`"kind":"jwks.change"`, `removed \"remote-c\"`, `removed \"remote-d\"`} {
		if !strings.Contains(p.audit.String(), want) {
			t.Errorf("audit stream lacks %s:\n%s", want, p.audit.String())
		}
	}
	for _, l := range p.lines {
		for _, tok := range []string{tokA, tokB, tokC, tokD, tokE} {
			if strings.Contains(fmt.Sprint(l), tok) {
				t.Fatalf("a log line holds a token: %v", l)
			}
		}
	}
}

// TestValidateFetchKeysRefusesPlainHTTPJWKSURI: `gatehouse validate
// --fetch-keys` follows an https issuer's discovery (a TLS server on
// 127.0.0.1, trusted through SSL_CERT_FILE) and reports a plain http://
// jwks_uri with file:line, unless allowLoopbackHTTPJWKS allows it.
func TestValidateFetchKeysRefusesPlainHTTPJWKSURI(t *testing.T) {
	bin, err := build()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	s := newSigner(t, "k1")
	plain := newJWKSEndpoint(t, jwksOf(t, s))
	var issuer string
	tlsIDP := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, plain.URL+"/keys")
	}))
	defer tlsIDP.Close()
	issuer = tlsIDP.URL
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsIDP.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := func(extra string) string {
		path := filepath.Join(dir, "gatehouse.yaml")
		writeFile(t, path, fmt.Sprintf(`apiVersion: gatehouse/v1
authz:
  jwt:
    issuers:
      - name: corp
        issuer: %s
        audiences: [api]
        algorithms: [RS256]
        discovery: true%s
routes:
  - {id: orders, match: {prefix: /orders}, authz: {jwt: {}}}
`, issuer, extra))
		return path
	}
	validate := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"validate"}, args...)...)
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ca)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	path := conf("")
	if code, out := validate(path); code != 0 {
		t.Fatalf("validate (offline) = exit %d:\n%s", code, out)
	}
	code, out := validate("--fetch-keys", path)
	want := `gatehouse.yaml:9: authz.jwt.issuers[0].discovery: fetched as serve would, and refused: jwt: refusing a plain http:// jwks_uri from the discovery document of an https issuer: jwks_uri "` + plain.URL + `/keys"; set allowLoopbackHTTPJWKS: true to allow it on this host`
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("validate --fetch-keys (http jwks_uri) = exit %d:\n%s\nwant exit 1 and %q", code, out, want)
	}
	if code, out := validate("--fetch-keys", conf("\n        allowLoopbackHTTPJWKS: true")); code != 0 || !strings.Contains(out, "ok: ") {
		t.Errorf("validate --fetch-keys (allowed on loopback) = exit %d:\n%s\nwant 0", code, out)
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func body(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond for up to 20s: a bounded wait for the process, not a
// timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
