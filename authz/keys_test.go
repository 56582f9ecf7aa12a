package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/authz/jwt"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// keyServer is an identity provider's JWKS endpoint on 127.0.0.1 that a
// test can rotate, empty or break.
type keyServer struct {
	*httptest.Server
	mu   sync.Mutex
	code int
	body string
}

func newKeyServer(t *testing.T, body string) *keyServer {
	ks := &keyServer{code: 200, body: body}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		ks.mu.Lock()
		code, body := ks.code, ks.body
		ks.mu.Unlock()
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(code int, body string) {
	ks.mu.Lock()
	ks.code, ks.body = code, body
	ks.mu.Unlock()
}

// remoteConfig is testConfig with a second issuer whose keys are fetched
// from url.
func remoteConfig(t *testing.T, url string) string {
	return strings.Replace(testConfig(t), "  apiKeys:\n", fmt.Sprintf(`      - name: remote
        issuer: https://remote.test
        audiences: [api]
        algorithms: [RS256]
        jwksURL: %s
  apiKeys:
`, url), 1)
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

// TestJWKSRefreshEndpoint: POST /authz/jwks/refresh fetches every remote
// key set now; a key the issuer removed stops verifying at once. Only
// POST is routed.
func TestJWKSRefreshEndpoint(t *testing.T) {
	keys := newKeyServer(t, testJWKS(t))
	s, rec, _ := newServer(t, remoteConfig(t, keys.URL), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range s.AdminRoutes() {
		mux.Handle(p, h)
	}
	admin := httptest.NewServer(mux)
	defer admin.Close()

	tok := token(t, map[string]any{"iss": "https://remote.test"})
	req := check{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer " + tok}}.request()
	if resp := checkWire(t, s, req); status(resp) != 200 {
		t.Fatalf("Check(remote token) = %d; want 200", status(resp))
	}

	// The endpoint now publishes only an EC key, which the issuer's RS256
	// cannot use: the set has no usable key and is refused; the endpoint
	// says so, and k1 keeps verifying.
	setupKeys()
	k2, _ := jwkset.NewJWKFromKey(&caKey.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k2"}})
	b, _ := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{k2.Marshal()}})
	keys.set(200, string(b))
	code, body := post(t, admin.URL+PathJWKSRefresh)
	if code != http.StatusBadGateway || !strings.Contains(body, `"issuer": "remote"`) || !strings.Contains(body, "none of the JWKS's 1 keys") {
		t.Fatalf("POST %s (no usable key) = %d %s; want 502 naming the issuer and the refusal", PathJWKSRefresh, code, body)
	}
	if resp := checkWire(t, s, req); status(resp) != 200 {
		t.Fatalf("Check(remote token) after a refused refresh = %d; want 200 from the last good set", status(resp))
	}

	// The issuer revokes k1: the same key now goes by k3 only.
	keys.set(200, strings.Replace(testJWKS(t), `"kid":"k1"`, `"kid":"k3"`, 1))
	code, body = post(t, admin.URL+PathJWKSRefresh)
	var rep struct{ Issuers []RefreshResult }
	if err := json.Unmarshal([]byte(body), &rep); err != nil || code != 200 || len(rep.Issuers) != 1 || !rep.Issuers[0].OK || rep.Issuers[0].Keys != 1 {
		t.Fatalf("POST %s = %d %s; want 200 with the remote issuer refreshed", PathJWKSRefresh, code, body)
	}
	if resp := checkWire(t, s, req); status(resp) != 401 {
		t.Errorf("Check(token of revoked k1) after a forced refresh = %d; want 401", status(resp))
	}
	if ev := rec.last(audit.KindJWKSChange); ev.Issuer != "https://remote.test" || !strings.Contains(ev.Detail, `removed "k1"`) || !strings.Contains(ev.Detail, `added "k3"`) {
		t.Errorf("jwks.change audit event = %+v; want k1 removed and k3 added", ev)
	}

	resp, err := http.Get(admin.URL + PathJWKSRefresh)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d; want 405 (POST only)", PathJWKSRefresh, resp.StatusCode)
	}
}

// TestNotReadyWithEmptyJWKS: an endpoint that answers 200 with no keys at
// start-up keeps authz not ready, with the reason, and counts it.
func TestNotReadyWithEmptyJWKS(t *testing.T) {
	keys := newKeyServer(t, `{"keys":[]}`)
	s, _, reg := newServer(t, remoteConfig(t, keys.URL), nil)
	deadline := time.Now().Add(30 * time.Second)
	for s.remoteHealth().Errors["no_usable_key"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the first fetch")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := s.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "jwt issuer remote: key set not loaded: jwt: the JWKS holds no keys") {
		t.Errorf("Ready() = %v; want not ready, saying the JWKS holds no keys", err)
	}
	if n, err := testutil.GatherAndCount(reg, "gatehouse_authz_jwks_fetch_errors_total"); err != nil || n != 7 {
		t.Errorf("gatehouse_authz_jwks_fetch_errors_total series = %d, %v; want one per reason for the remote issuer", n, err)
	}
}

// TestReloadKeepsRemoteKeySets: an unchanged reload keeps the remote key
// set (no refetch, no lost cache); a change to its fetch settings builds
// a new one.
func TestReloadKeepsRemoteKeySets(t *testing.T) {
	keys := newKeyServer(t, testJWKS(t))
	yaml := remoteConfig(t, keys.URL)
	s, _, _ := newServer(t, yaml, nil)
	before := s.engine.Load().keySets
	if len(before) != 1 {
		t.Fatalf("key sets = %d; want 1 (the remote issuer)", len(before))
	}
	reload := func(y string) {
		t.Helper()
		cfg, err := config.LoadBytes("<test>", []byte(y), config.LoadOptions{LookupEnv: func(string) (string, bool) { return "gh-secret", true }})
		if err != nil {
			t.Fatal(err)
		}
		commit, err := s.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		commit()
	}
	reload(yaml)
	for k, ks := range s.engine.Load().keySets {
		if before[k] != ks {
			t.Error("the remote key set was rebuilt on an unchanged reload")
		}
	}
	reload(strings.Replace(yaml, "jwksURL: "+keys.URL, "jwksURL: "+keys.URL+"\n        maxJWKSSize: 64KiB", 1))
	for _, ks := range s.engine.Load().keySets {
		for _, old := range before {
			if old == ks {
				t.Error("the remote key set was kept though its maxJWKSSize changed")
			}
		}
	}
}

// TestProbeKeys: validate --fetch-keys reports, at the issuer's path,
// what serve would refuse.
func TestProbeKeys(t *testing.T) {
	keys := newKeyServer(t, testJWKS(t))
	load := func() *config.Config {
		cfg, err := config.LoadBytes("<test>", []byte(remoteConfig(t, keys.URL)), config.LoadOptions{LookupEnv: func(string) (string, bool) { return "gh-secret", true }})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if err := ProbeKeys(context.Background(), load()); err != nil {
		t.Errorf("ProbeKeys(good endpoint) = %v; want nil", err)
	}
	keys.set(200, `{"keys":[]}`)
	err := ProbeKeys(context.Background(), load())
	if err == nil || !strings.Contains(err.Error(), "authz.jwt.issuers[1].jwksURL: fetched as serve would, and refused: jwt: the JWKS holds no keys") {
		t.Errorf("ProbeKeys(empty set) = %v; want the refusal at authz.jwt.issuers[1].jwksURL", err)
	}
}

func (s *Server) remoteHealth() jwt.Health {
	for _, h := range s.engine.Load().jwt.Health() {
		if h.Issuer == "remote" {
			return h
		}
	}
	return jwt.Health{}
}
