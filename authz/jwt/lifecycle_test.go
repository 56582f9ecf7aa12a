package jwt

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gjwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// auditLog keeps the audit events a key set records.
type auditLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *auditLog) Record(e audit.Event) {
	a.mu.Lock()
	a.events = append(a.events, e)
	a.mu.Unlock()
}

func (a *auditLog) details(kind audit.Kind) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, e := range a.events {
		if e.Kind == kind {
			out = append(out, e.Detail)
		}
	}
	return out
}

// logBuf is a goroutine-safe log destination.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lifecycle is a started verifier whose logs and audit events are kept.
type lifecycle struct {
	v     *Verifier
	logs  *logBuf
	audit *auditLog
}

func startVerifier(t *testing.T, client *http.Client, is config.JWTIssuer) *lifecycle {
	t.Helper()
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	lc := &lifecycle{logs: &logBuf{}, audit: &auditLog{}}
	v, err := New(&config.AuthzJWT{Issuers: []config.JWTIssuer{is}, MaxTokenSize: 8192, CacheSize: 1000, CacheTTL: config.Duration(5 * time.Minute)},
		Options{Client: client, Logger: slog.New(slog.NewJSONHandler(lc.logs, nil)), Audit: lc.audit})
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		ks.Start()
		t.Cleanup(ks.Stop)
	}
	lc.v = v
	return lc
}

// loadedRemote starts a verifier of an issuer whose JWKS, body, is served
// by a jwksServer, and waits for the first fetch.
func loadedRemote(t *testing.T, body []byte) (*jwksServer, *lifecycle) {
	t.Helper()
	srv := newJWKSServer(t, body)
	lc := startVerifier(t, nil, remoteIssuer(srv.URL))
	waitLoaded(t, lc.v)
	return srv, lc
}

func (lc *lifecycle) keys() *KeySet { return lc.v.byName["idp"].keys }

func (lc *lifecycle) verify(t *testing.T, tok string) core.Code {
	t.Helper()
	_, code := lc.v.Verify(context.Background(), tok, nil)
	return code
}

// until polls cond for up to 30s: a bounded wait for background work, not
// a timing assertion.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jwkJSON renders one key as a JWK with extra members set (use, alg...).
func jwkJSON(t testing.TB, key any, kid string, private bool, extra map[string]any) []byte {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}, Marshal: jwkset.JWKMarshalOptions{Private: private}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j.Marshal())
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for k, v := range extra {
		m[k] = v
	}
	b, _ = json.Marshal(m)
	return b
}

func keysDoc(jwks ...[]byte) []byte {
	return []byte(`{"keys":[` + string(bytes.Join(jwks, []byte(","))) + `]}`)
}

// TestJWKSFileEditTakesEffectAtReload: a reload builds the verifier anew
// from the edited jwksFile while keeping the issuer's remote key set (no
// refetch). Before, the whole key set was reused by the file's path, and
// the old file's keys kept verifying.
func TestJWKSFileEditTakesEffectAtReload(t *testing.T) {
	keys()
	now := time.Now()
	file := t.TempDir() + "/jwks.json"
	if err := os.WriteFile(file, jwks(t, &rsaA.PublicKey, "a"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t, jwks(t, &ecKey.PublicKey, "remote"))
	is := remoteIssuer(srv.URL)
	is.JWKSFile = config.FilePath(file)
	lc := startVerifier(t, nil, is)
	waitLoaded(t, lc.v)
	tokA := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, nil))
	tokB := mint(t, gjwt.SigningMethodRS256, rsaB, "b", claims(now, nil))
	tokRemote := mint(t, gjwt.SigningMethodES256, ecKey, "remote", claims(now, nil))
	for tok, want := range map[string]core.Code{tokA: core.OK, tokB: core.TokenUnknownKID, tokRemote: core.OK} {
		if got := lc.verify(t, tok); got != want {
			t.Fatalf("before the edit: Verify(kid %s) = %v; want %v", kidOf(tok), got, want)
		}
	}

	if err := os.WriteFile(file, jwks(t, &rsaB.PublicKey, "b"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The reload: a new verifier from the same config, given the serving
	// one's key sets, as authz.Server.Prepare does.
	v2, err := New(&config.AuthzJWT{Issuers: []config.JWTIssuer{is}, MaxTokenSize: 8192, CacheSize: 1000, CacheTTL: config.Duration(5 * time.Minute)},
		Options{KeySets: lc.v.KeySets(), Client: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v2.byName["idp"].keys, lc.keys(); got != want {
		t.Error("the reload rebuilt the issuer's remote key set; want it kept (no refetch)")
	}
	for tok, want := range map[string]core.Code{tokA: core.TokenUnknownKID, tokB: core.OK, tokRemote: core.OK} {
		if _, got := v2.Verify(context.Background(), tok, nil); got != want {
			t.Errorf("after the edit: Verify(kid %s) = %v; want %v", kidOf(tok), got, want)
		}
	}
}

func kidOf(tok string) string {
	h, _ := ParseHeader(tok)
	return h.Kid
}

// TestNoUsableKeyKeepsLastGoodSet: a 200 whose JWKS has no key that can
// verify a token of the issuer is a failed fetch: the last good keys keep
// verifying, and the failure is counted, logged and shown in Health.
func TestNoUsableKeyKeepsLastGoodSet(t *testing.T) {
	keys()
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privateJWK := jwkJSON(t, rsaB, "leaked", true, nil)
	short, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"no keys", []byte(`{"keys":[]}`)},
		{"an error document", []byte(`{"error":"temporarily_unavailable"}`)},
		{"an empty object", []byte(`{}`)},
		{"a symmetric key", []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`)},
		{"an encryption key", keysDoc(jwkJSON(t, &rsaB.PublicKey, "enc", false, map[string]any{"use": "enc"}))},
		{"a key not for verifying", keysDoc(jwkJSON(t, &rsaB.PublicKey, "ops", false, map[string]any{"key_ops": []string{"encrypt"}}))},
		{"a key of an algorithm not allowed", keysDoc(jwkJSON(t, &rsaB.PublicKey, "rs512", false, map[string]any{"alg": "RS512"}))},
		{"a key whose alg does not fit it", keysDoc(jwkJSON(t, &rsaB.PublicKey, "mismatch", false, map[string]any{"alg": "ES256"}))},
		{"a key agreement key", keysDoc(jwkJSON(t, x25519.PublicKey(), "x", false, nil))},
		{"a private key", keysDoc(privateJWK)},
		{"an RSA key under 2048 bits", keysDoc(jwkJSON(t, &short.PublicKey, "short", false, nil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			srv, lc := loadedRemote(t, jwks(t, &rsaA.PublicKey, "a"))
			srv.set(200, tt.body)
			err := lc.keys().Refresh(context.Background())
			if err == nil || failReason(err) != FailNoUsableKey {
				t.Fatalf("Refresh(%s) = %v; want a %s failure", tt.name, err, FailNoUsableKey)
			}
			// A token never seen before, so that no cache answers for it.
			tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": "bob"}))
			if got := lc.verify(t, tok); got != core.OK {
				t.Errorf("Verify(kid a) after %s = %v; want allowed by the last good set", tt.name, got)
			}
			h := lc.v.Health()[0]
			if !h.Loaded || h.Keys != 1 || h.LastError == "" || h.Errors[FailNoUsableKey] != 1 {
				t.Errorf("Health() = %+v; want loaded, 1 key, the error, 1 %s failure", h, FailNoUsableKey)
			}
			logs := lc.logs.String()
			if !strings.Contains(logs, `"reason":"no_usable_key"`) {
				t.Errorf("logs lack the no_usable_key failure:\n%s", logs)
			}
			var priv struct{ D string }
			_ = json.Unmarshal(privateJWK, &priv)
			if strings.Contains(logs, priv.D) || strings.Contains(logs, tok) {
				t.Errorf("logs hold key material or a token:\n%s", logs)
			}
		})
	}
}

// TestUnusableKeysAreSkipped: usable keys beside unusable ones are kept,
// the others ignored and named in the audit line.
func TestUnusableKeysAreSkipped(t *testing.T) {
	keys()
	_, lc := loadedRemote(t, keysDoc(jwkJSON(t, &rsaA.PublicKey, "a", false, nil), jwkJSON(t, &rsaB.PublicKey, "enc", false, map[string]any{"use": "enc"})))
	if h := lc.v.Health()[0]; h.Keys != 1 || h.LastError != "" {
		t.Errorf("Health() = %+v; want 1 key and no error", h)
	}
	if got := lc.verify(t, mint(t, gjwt.SigningMethodRS256, rsaB, "enc", claims(time.Now(), nil))); got != core.TokenUnknownKID {
		t.Errorf("Verify(kid of an encryption key) = %v; want token_unknown_kid", got)
	}
	if d := lc.audit.details(audit.KindJWKSChange); len(d) != 1 || !strings.Contains(d[0], `added "a"`) || !strings.Contains(d[0], `ignored "enc"`) {
		t.Errorf("jwks.change audit details = %q; want one naming kid a added and enc ignored", d)
	}
}

// TestNotReadyWithoutUsableKeyAtStart: an endpoint answering 200 with an
// empty set at start-up leaves the issuer not loaded (so /readyz fails and
// its tokens get jwks_unavailable) until a fetch brings a usable key.
func TestNotReadyWithoutUsableKeyAtStart(t *testing.T) {
	keys()
	srv := newJWKSServer(t, []byte(`{"keys":[]}`))
	lc := startVerifier(t, nil, remoteIssuer(srv.URL))
	until(t, "the first fetch to fail", func() bool { return lc.v.Health()[0].Errors[FailNoUsableKey] >= 1 })
	if h := lc.v.Health()[0]; h.Loaded || h.Keys != 0 {
		t.Errorf("Health() after an empty first fetch = %+v; want not loaded", h)
	}
	tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil))
	if got := lc.verify(t, tok); got != core.JWKSUnavailable {
		t.Errorf("Verify with no usable key fetched yet = %v; want jwks_unavailable", got)
	}
	srv.set(200, jwks(t, &rsaA.PublicKey, "a"))
	if err := lc.keys().Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh(good set) = %v", err)
	}
	waitLoaded(t, lc.v)
	if got := lc.verify(t, tok); got != core.OK {
		t.Errorf("Verify once loaded = %v; want allowed", got)
	}
}

// TestRemovedKeyDropsCachedVerifications: when a fetch drops a kid, or
// gives it another key, tokens that key verified are refused at the next
// Check, not served from the verified-token cache until their cacheTTL.
func TestRemovedKeyDropsCachedVerifications(t *testing.T) {
	keys()
	now := time.Now()
	srv, lc := loadedRemote(t, jwks(t, &rsaA.PublicKey, "a", &rsaB.PublicKey, "b"))
	tokA := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, nil))
	tokB := mint(t, gjwt.SigningMethodRS256, rsaB, "b", claims(now, nil))
	for range 2 {
		for _, tok := range []string{tokA, tokB} {
			if got := lc.verify(t, tok); got != core.OK {
				t.Fatalf("Verify(kid %s) = %v; want allowed", kidOf(tok), got)
			}
		}
	}
	if st := lc.v.Stats(); st.Verifications != 2 || st.CacheHits != 2 {
		t.Fatalf("Stats() = %+v; want 2 verifications and 2 cache hits", st)
	}

	// The issuer removes a; a refresh (scheduled, forced or for an unknown
	// kid: all go through the same storage) sees it.
	srv.set(200, jwks(t, &rsaB.PublicKey, "b"))
	if err := lc.keys().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := lc.verify(t, tokA); got != core.TokenUnknownKID {
		t.Errorf("Verify(cached token of removed kid a) = %v; want token_unknown_kid", got)
	}
	// b's token is checked once more (the cache cannot tell which key a
	// token used), then cached again.
	before := lc.v.Stats().Verifications
	for range 2 {
		if got := lc.verify(t, tokB); got != core.OK {
			t.Errorf("Verify(kid b, still published) = %v; want allowed", got)
		}
	}
	if got := lc.v.Stats().Verifications - before; got != 1 {
		t.Errorf("verifications of kid b's token after the removal = %d; want 1, then the cache", got)
	}
	if d := lc.audit.details(audit.KindJWKSChange); len(d) != 2 || !strings.Contains(d[1], `removed "a"`) {
		t.Errorf("jwks.change audit details = %q; want the load, then kid a removed", d)
	}

	// Kid b now names another key: b's cached token no longer verifies.
	srv.set(200, jwks(t, &rsaA.PublicKey, "b"))
	if err := lc.keys().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := lc.verify(t, tokB); got != core.TokenSignatureInvalid {
		t.Errorf("Verify(cached token of kid b, whose key changed) = %v; want token_signature_invalid", got)
	}
}

// TestKickRefreshes: Kick (what SIGHUP does) makes the background loop
// fetch at once, without waiting for the refresh interval (an hour here).
func TestKickRefreshes(t *testing.T) {
	keys()
	srv, lc := loadedRemote(t, jwks(t, &rsaA.PublicKey, "a"))
	tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil))
	if got := lc.verify(t, tok); got != core.OK {
		t.Fatalf("Verify = %v; want allowed", got)
	}
	srv.set(200, jwks(t, &rsaB.PublicKey, "b"))
	lc.keys().Kick()
	until(t, "the kicked fetch to drop kid a", func() bool { return lc.verify(t, tok) == core.TokenUnknownKID })
}

// bigJWKS is a JWKS of key a and enough copies of key b, under other
// kids, to pass size bytes: a key set that grew.
func bigJWKS(t testing.TB, size int) []byte {
	one := jwkJSON(t, &rsaB.PublicKey, "pad-000000", false, nil)
	parts := [][]byte{jwkJSON(t, &rsaA.PublicKey, "a", false, nil)}
	for i, n := 0, 0; n <= size; i++ {
		k := bytes.Replace(one, []byte("pad-000000"), []byte(fmt.Sprintf("pad-%06d", i)), 1)
		parts = append(parts, k)
		n += len(k) + 1
	}
	return keysDoc(parts...)
}

// TestJWKSSizeCap: a JWKS response over maxJWKSSize (1MiB by default) is
// a failed fetch, refused without reading the rest of it.
func TestJWKSSizeCap(t *testing.T) {
	keys()
	const mib = 1 << 20
	tests := []struct {
		name    string
		max     config.ByteSize
		body    []byte
		pad     int64
		declare bool
	}{
		{"a key set grown past the default cap", mib, bigJWKS(t, mib), 0, false},
		{"a key set past a configured cap", 4 << 10, bigJWKS(t, 4<<10), 0, false},
		{"a 400MiB stream", mib, jwks(t, &rsaA.PublicKey, "a"), 400 * mib, false},
		{"a declared 400MiB body", mib, jwks(t, &rsaA.PublicKey, "a"), 400 * mib, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, jwks(t, &rsaA.PublicKey, "a"))
			is := remoteIssuer(srv.URL)
			is.MaxJWKSSize = tt.max
			lc := startVerifier(t, nil, is)
			waitLoaded(t, lc.v)
			srv.mu.Lock()
			srv.body, srv.pad, srv.declare = tt.body, tt.pad, tt.declare
			srv.mu.Unlock()
			srv.written.Store(0)
			err := lc.keys().Refresh(context.Background())
			if err == nil || failReason(err) != FailTooLarge {
				t.Fatalf("Refresh(%s) = %v; want a %s failure", tt.name, err, FailTooLarge)
			}
			if !strings.Contains(err.Error(), "larger than "+tt.max.String()) {
				t.Errorf("Refresh error = %q; want it to name the cap %s", err, tt.max)
			}
			// The server writes until the client hangs up; socket buffers
			// let it get some MiB ahead of what was read, not hundreds.
			srv.Close()
			t.Logf("refused: %v; the server sent %d bytes", err, srv.written.Load())
			if w := srv.written.Load(); tt.pad > 0 && w > 64*mib {
				t.Errorf("the server sent %d MiB before the fetch gave up; want it refused after about %s", w/mib, tt.max)
			}
			tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), map[string]any{"sub": "bob"}))
			if got := lc.verify(t, tok); got != core.OK {
				t.Errorf("Verify(kid a) after a refused fetch = %v; want allowed by the last good set", got)
			}
			if h := lc.v.Health()[0]; h.Keys != 1 || h.Errors[FailTooLarge] != 1 {
				t.Errorf("Health() = %+v; want 1 key and 1 %s failure", h, FailTooLarge)
			}
		})
	}
	t.Run("at start-up", func(t *testing.T) {
		srv := newJWKSServer(t, bigJWKS(t, 4<<10))
		is := remoteIssuer(srv.URL)
		is.MaxJWKSSize = 4 << 10
		lc := startVerifier(t, nil, is)
		until(t, "the first fetch to fail", func() bool { return lc.v.Health()[0].Errors[FailTooLarge] >= 1 })
		if h := lc.v.Health()[0]; h.Loaded {
			t.Errorf("Health() = %+v; want not loaded", h)
		}
	})
}

// discoveryServer is an https issuer (an httptest TLS server on
// 127.0.0.1) whose discovery document names jwksURI; it serves a JWKS of
// key a at /jwks itself.
func discoveryServer(t *testing.T, jwksURI func(self string) string) *httptest.Server {
	keys()
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srv.URL, jwksURI(srv.URL))
		case "/jwks":
			_, _ = w.Write(jwks(t, &rsaA.PublicKey, "a"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDiscoveryRefusesPlainHTTPJWKSURI: an https issuer's discovery
// document naming an http:// jwks_uri is refused (never fetched) unless
// allowLoopbackHTTPJWKS is set and the jwks_uri is on this host.
func TestDiscoveryRefusesPlainHTTPJWKSURI(t *testing.T) {
	keys()
	plain := newJWKSServer(t, jwks(t, &rsaA.PublicKey, "a"))
	tests := []struct {
		name     string
		jwksURI  func(self string) string
		allow    bool
		wantErr  string
		wantHint string
	}{
		{"https jwks_uri", func(self string) string { return self + "/jwks" }, false, "", ""},
		{"http jwks_uri on loopback", func(string) string { return plain.URL }, false, "refusing a plain http:// jwks_uri", "set allowLoopbackHTTPJWKS: true"},
		{"http jwks_uri on loopback, allowed", func(string) string { return plain.URL }, true, "", ""},
		{"http jwks_uri elsewhere, loopback allowed", func(string) string { return "http://keys.gatehouse.invalid/jwks" }, true, "refusing a plain http:// jwks_uri", "serve the keys over https"},
		{"http jwks_uri behind a loopback-looking name", func(string) string { return "http://127.0.0.1.gatehouse.invalid/jwks" }, true, "refusing a plain http:// jwks_uri", "serve the keys over https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disc := discoveryServer(t, tt.jwksURI)
			is := issuerConfig("")
			is.JWKS, is.Issuer, is.Discovery, is.AllowLoopbackHTTPJWKS = "", disc.URL, true, tt.allow
			hitsBefore := plain.hits.Load()
			err := NewKeySet(&is, Options{Client: disc.Client()}).Probe(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Probe(%s) = %v; want the keys fetched", tt.name, err)
			case tt.wantErr != "" && (err == nil || failReason(err) != FailInsecureURI || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.wantHint)):
				t.Fatalf("Probe(%s) = %v; want a %s failure saying %q and %q", tt.name, err, FailInsecureURI, tt.wantErr, tt.wantHint)
			}
			if tt.wantErr != "" && plain.hits.Load() != hitsBefore {
				t.Errorf("the refused http:// jwks_uri was fetched anyway")
			}
		})
	}

	t.Run("serve", func(t *testing.T) {
		disc := discoveryServer(t, func(string) string { return plain.URL })
		is := issuerConfig("")
		is.JWKS, is.Issuer, is.Discovery = "", disc.URL, true
		lc := startVerifier(t, disc.Client(), is)
		until(t, "discovery to be refused", func() bool { return lc.v.Health()[0].Errors[FailInsecureURI] >= 1 })
		if h := lc.v.Health()[0]; h.Loaded {
			t.Errorf("Health() = %+v; want not loaded", h)
		}
		tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), map[string]any{"iss": disc.URL}))
		if got := lc.verify(t, tok); got != core.JWKSUnavailable {
			t.Errorf("Verify = %v; want jwks_unavailable", got)
		}
		if !strings.Contains(lc.logs.String(), `"reason":"insecure_jwks_uri"`) {
			t.Errorf("logs lack the refusal:\n%s", lc.logs.String())
		}
	})
}

// TestFailReasons: each fetch failure is counted under one reason.
func TestFailReasons(t *testing.T) {
	keys()
	tests := []struct {
		name string
		code int
		body []byte
		want string
	}{
		{"server error", 503, nil, FailHTTPStatus},
		{"not JSON", 200, []byte("<html>oops</html>"), FailMalformed},
		{"a key that does not parse", 200, []byte(`{"keys":[{"kty":"RSA","kid":"x","n":"!!","e":"AQAB"}]}`), FailMalformed},
		{"no usable key", 200, []byte(`{"keys":[]}`), FailNoUsableKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, lc := loadedRemote(t, jwks(t, &rsaA.PublicKey, "a"))
			srv.set(tt.code, tt.body)
			if err := lc.keys().Refresh(context.Background()); failReason(err) != tt.want {
				t.Errorf("Refresh(%s) = %v (%s); want %s", tt.name, err, failReason(err), tt.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv, lc := loadedRemote(t, jwks(t, &rsaA.PublicKey, "a"))
		srv.Close()
		if err := lc.keys().Refresh(context.Background()); failReason(err) != FailUnreachable {
			t.Errorf("Refresh(closed server) = %v (%s); want %s", err, failReason(err), FailUnreachable)
		}
	})
	if got := failReason(errors.New("something else")); got != FailMalformed {
		t.Errorf("failReason(other) = %s; want %s", got, FailMalformed)
	}
}

// bodyTransport answers every request with body: jwkset's own fetch and
// parse, without a network.
type bodyTransport []byte

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: -1, Request: r, Header: http.Header{}}, nil
}

// FuzzFetchedJWKS: whatever a JWKS endpoint answers, the fetch neither
// panics nor keeps a key that cannot verify, and a refused answer keeps
// nothing.
func FuzzFetchedJWKS(f *testing.F) {
	keys()
	f.Add(jwks(f, &rsaA.PublicKey, "a", &ecKey.PublicKey, "ec", edKey.Public(), "ed"))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`))
	f.Add(keysDoc(jwkJSON(f, &rsaB.PublicKey, "enc", false, map[string]any{"use": "enc"}), jwkJSON(f, &rsaA.PublicKey, "a", false, map[string]any{"alg": "RS256"})))
	f.Add(keysDoc(jwkJSON(f, rsaB, "leaked", true, nil)))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"bad"}]}`))
	is := remoteIssuer("http://jwks.gatehouse.invalid/keys")
	is.MaxJWKSSize = 64 << 10
	f.Fuzz(func(t *testing.T, body []byte) {
		ks := NewKeySet(&is, Options{Client: &http.Client{Transport: bodyTransport(body)}})
		s, err := ks.newStorage(context.Background(), is.JWKSURL, 0)
		if err != nil {
			if h := ks.Health(); h.Keys != 0 {
				t.Fatalf("a refused answer (%v) left %d keys", err, h.Keys)
			}
			return
		}
		got, err := s.KeyReadAll(context.Background())
		if err != nil || len(got) == 0 {
			t.Fatalf("an accepted answer holds %d keys (%v); want at least one", len(got), err)
		}
		for _, k := range got {
			if why := unusable(k, ks.algs); why != "" {
				t.Fatalf("kept key %q: %s", k.Marshal().KID, why)
			}
		}
	})
}
