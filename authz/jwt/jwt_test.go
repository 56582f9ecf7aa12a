package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	base64pkg "encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gjwt "github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	keysOnce sync.Once
	rsaA     *rsa.PrivateKey
	rsaB     *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func keys() {
	keysOnce.Do(func() {
		rsaA, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsaB, _ = rsa.GenerateKey(rand.Reader, 2048)
		ecKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, edKey, _ = ed25519.GenerateKey(rand.Reader)
	})
}

// jwks renders the public keys as a JWKS with the given kids.
func jwks(t testing.TB, pairs ...any) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for i := 0; i < len(pairs); i += 2 {
		j, err := jwkset.NewJWKFromKey(pairs[i], jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: pairs[i+1].(string)}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, _ := json.Marshal(set)
	return b
}

const iss = "https://idp.test"

func mint(t testing.TB, m gjwt.SigningMethod, key any, kid string, claims gjwt.MapClaims) string {
	t.Helper()
	tok := gjwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(now time.Time, over map[string]any) gjwt.MapClaims {
	c := gjwt.MapClaims{"iss": iss, "aud": "api", "sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "scope": "read write", "plan": "pro"}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func issuerConfig(jwksDoc string) config.JWTIssuer {
	return config.JWTIssuer{
		Name: "idp", Issuer: iss, Audiences: []string{"api"},
		Algorithms: []config.JWTAlgorithm{"RS256", "ES256", "EdDSA"},
		JWKS:       jwksDoc, Leeway: config.Duration(30 * time.Second),
		RefreshInterval: config.Duration(time.Hour), UnknownKidInterval: config.Duration(time.Minute),
		FetchTimeout: config.Duration(10 * time.Second), MaxJWKSSize: 1 << 20, SubjectClaim: "sub", ScopeClaim: "scope",
		TierClaim: "plan", Tiers: []string{"free", "pro"},
	}
}

func newVerifier(t testing.TB, now func() time.Time, issuers ...config.JWTIssuer) *Verifier {
	t.Helper()
	v, err := New(&config.AuthzJWT{Issuers: issuers, MaxTokenSize: 8192, CacheSize: 1000, CacheTTL: config.Duration(5 * time.Minute)},
		Options{Client: &http.Client{Timeout: 5 * time.Second}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	for _, ks := range v.KeySets() {
		ks.Start()
		t.Cleanup(ks.Stop)
	}
	return v
}

func TestVerifyBadTokens(t *testing.T) {
	keys()
	now := time.Now()
	v := newVerifier(t, nil, issuerConfig(string(jwks(t, &rsaA.PublicKey, "a", &ecKey.PublicKey, "ec", edKey.Public(), "ed"))))
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	tests := []struct {
		name  string
		token string
		want  core.Code
	}{
		{"valid RS256", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, nil)), core.OK},
		{"valid ES256", mint(t, gjwt.SigningMethodES256, ecKey, "ec", claims(now, nil)), core.OK},
		{"valid EdDSA", mint(t, gjwt.SigningMethodEdDSA, edKey, "ed", claims(now, nil)), core.OK},
		{"expired", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"exp": now.Add(-time.Minute).Unix()})), core.TokenExpired},
		{"expired within leeway", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"exp": now.Add(-10 * time.Second).Unix()})), core.OK},
		{"no exp", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"exp": nil})), core.TokenClaimsInvalid},
		{"not yet valid", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"nbf": now.Add(time.Hour).Unix()})), core.TokenNotYetValid},
		{"issued in the future", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"iat": now.Add(time.Hour).Unix()})), core.TokenNotYetValid},
		{"wrong audience", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": "other"})), core.TokenAudienceMismatch},
		// An issuer with audiences requires aud: a token naming none of
		// them, by leaving aud out or empty, is an audience mismatch.
		{"no audience", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": nil})), core.TokenAudienceMismatch},
		{"empty audience", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": ""})), core.TokenAudienceMismatch},
		{"empty audience list", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": []string{}})), core.TokenAudienceMismatch},
		{"audience list of an empty string", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": []string{""}})), core.TokenAudienceMismatch},
		{"audience of the wrong type", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"aud": 7})), core.TokenClaimsInvalid},
		{"unknown issuer", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"iss": "https://evil"})), core.TokenIssuerUnknown},
		{"no subject", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": nil})), core.TokenClaimsInvalid},
		{"subject longer than a header value may be", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": strings.Repeat("a", contract.MaxHeaderValue+1)})), core.TokenClaimsInvalid},
		{"subject with a newline", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": "a\nx-admin: 1"})), core.TokenClaimsInvalid},
		{"exp not a number", mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"exp": "tomorrow"})), core.TokenClaimsInvalid},
		{"signed by another key", mint(t, gjwt.SigningMethodRS256, rsaB, "a", claims(now, nil)), core.TokenSignatureInvalid},
		{"unknown kid", mint(t, gjwt.SigningMethodRS256, rsaA, "nope", claims(now, nil)), core.TokenUnknownKID},
		{"alg none", noneToken(claims(now, nil)), core.TokenAlgNotAllowed},
		{"HS256 with the public key as secret (key confusion)", mint(t, gjwt.SigningMethodHS256, pubPEM, "a", claims(now, nil)), core.TokenAlgNotAllowed},
		{"RS512 not in the allow-list", mint(t, gjwt.SigningMethodRS512, rsaA, "a", claims(now, nil)), core.TokenAlgNotAllowed},
		{"ES256 header on the RSA key", swapAlg(t, mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, nil)), "ES256"), core.TokenSignatureInvalid},
		{"RS256 header on the EC key id", mint(t, gjwt.SigningMethodRS256, rsaA, "ec", claims(now, nil)), core.TokenSignatureInvalid},
		{"garbage", "not-a-token", core.TokenMalformed},
		{"two parts", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0", core.TokenMalformed},
		{"empty parts", "..", core.TokenMalformed},
		{"bad base64 header", "eyJ!.e30.sig", core.TokenMalformed},
		{"header not JSON", "bm90anNvbg.e30.c2ln", core.TokenMalformed},
		{"crit header", critToken(t), core.TokenMalformed},
		{"oversized", strings.Repeat("a", 9000), core.TokenTooLarge},
		{"empty", "", core.TokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vt, got := v.Verify(context.Background(), tt.token, nil)
			if got != tt.want {
				t.Fatalf("Verify(%s) = %v; want %v", tt.name, got, tt.want)
			}
			if got == core.OK && (vt.Identity.Subject != "alice" || vt.Identity.Tier != "pro" || !vt.Identity.HasScope("write") || vt.IssuerName != "idp") {
				t.Errorf("Verify(%s) identity = %+v", tt.name, &vt.Identity)
			}
		})
	}
}

// TestVerifySubjectLength: a subject goes upstream as a header, and the
// one bound on such values is contract.MaxHeaderValue (the verifier once
// had a bound of its own, 256 bytes).
func TestVerifySubjectLength(t *testing.T) {
	keys()
	now := time.Now()
	v := newVerifier(t, nil, issuerConfig(string(jwks(t, &rsaA.PublicKey, "a"))))
	sub := strings.Repeat("s", contract.MaxHeaderValue)
	vt, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": sub})), nil)
	if code != core.OK || vt.Identity.Subject != sub {
		t.Fatalf("Verify(subject of %d bytes) = %v; want OK", len(sub), code)
	}
}

func noneToken(c gjwt.MapClaims) string {
	s, _ := gjwt.NewWithClaims(gjwt.SigningMethodNone, c).SignedString(gjwt.UnsafeAllowNoneSignatureType)
	return s
}

func swapAlg(t testing.TB, token, alg string) string {
	parts := strings.Split(token, ".")
	h, _ := json.Marshal(map[string]string{"alg": alg, "kid": "a", "typ": "JWT"})
	parts[0] = strings.TrimRight(b64url(h), "=")
	return strings.Join(parts, ".")
}

func critToken(t testing.TB) string {
	keys()
	tok := gjwt.NewWithClaims(gjwt.SigningMethodRS256, claims(time.Now(), nil))
	tok.Header["crit"] = []string{"exp"}
	tok.Header["kid"] = "a"
	s, _ := tok.SignedString(rsaA)
	return s
}

func b64url(b []byte) string {
	return strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(stdB64(b)), "=")
}

// TestCacheNeverOutlivesExp: a cached token is refused once its exp has
// passed, without a new signature check being what refuses it.
func TestCacheNeverOutlivesExp(t *testing.T) {
	keys()
	var clock atomic.Int64
	start := time.Now()
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	is := issuerConfig(string(jwks(t, &rsaA.PublicKey, "a")))
	is.Leeway = 0
	v := newVerifier(t, now, is)
	tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(start, map[string]any{"exp": start.Add(2 * time.Minute).Unix()}))
	for i := 0; i < 3; i++ {
		if _, code := v.Verify(context.Background(), tok, nil); code != core.OK {
			t.Fatalf("Verify #%d = %v; want allowed", i, code)
		}
	}
	if st := v.Stats(); st.Verifications != 1 || st.CacheHits != 2 {
		t.Fatalf("Stats() = %+v; want 1 verification and 2 cache hits", st)
	}
	clock.Store(start.Add(3 * time.Minute).UnixNano())
	if _, code := v.Verify(context.Background(), tok, nil); code != core.TokenExpired {
		t.Fatalf("Verify after exp = %v; want token_expired", code)
	}
}

// jwksServer serves a JWKS that the test can change, break, block or
// grow.
type jwksServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  []byte
	code  int
	hits  atomic.Int64
	block chan struct{} // when set, requests wait for it to close
	seen  chan struct{} // receives once per request (non-blocking)
	// pad, when set, streams that many spaces before the body's last
	// byte (still one JSON document), declaring the length when declare.
	pad     int64
	declare bool
	// written counts the bytes the handler managed to send.
	written atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{body: body, code: 200, seen: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	select {
	case s.seen <- struct{}{}:
	default:
	}
	s.mu.Lock()
	body, code, block, pad, declare := s.body, s.code, s.block, s.pad, s.declare
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	if pad == 0 || len(body) == 0 {
		w.WriteHeader(code)
		n, _ := w.Write(body)
		s.written.Add(int64(n))
		return
	}
	if declare {
		w.Header().Set("Content-Length", strconv.FormatInt(int64(len(body))+pad, 10))
	}
	w.WriteHeader(code)
	write := func(b []byte) bool {
		n, err := w.Write(b)
		s.written.Add(int64(n))
		return err == nil
	}
	if !write(body[:len(body)-1]) {
		return
	}
	chunk := []byte(strings.Repeat(" ", 64<<10))
	for left := pad; left > 0; left -= int64(len(chunk)) {
		if !write(chunk[:min(int64(len(chunk)), left)]) {
			return // the client hung up
		}
	}
	write(body[len(body)-1:])
}

func (s *jwksServer) set(code int, body []byte) {
	s.mu.Lock()
	s.code, s.body = code, body
	s.mu.Unlock()
}

func remoteIssuer(url string) config.JWTIssuer {
	is := issuerConfig("")
	is.JWKS = ""
	is.JWKSURL = url
	return is
}

func waitLoaded(t testing.TB, v *Verifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ks := range v.KeySets() {
		if err := ks.WaitLoaded(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemoteJWKSDownJunkAndRotation(t *testing.T) {
	keys()
	now := time.Now()
	srv := newJWKSServer(t, jwks(t, &rsaA.PublicKey, "a"))
	is := remoteIssuer(srv.URL)
	is.UnknownKidInterval = config.Duration(time.Hour) // one unknown-kid fetch, then none
	v := newVerifier(t, nil, is)
	waitLoaded(t, v)
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, nil)), nil); code != core.OK {
		t.Fatalf("Verify(key a) = %v; want allowed", code)
	}

	// The endpoint answers junk, then goes down: cached keys keep serving.
	srv.set(200, []byte("<html>oops</html>"))
	v.byName["idp"].keys.fetchNow(context.Background())
	srv.set(503, nil)
	v.byName["idp"].keys.fetchNow(context.Background())
	h := v.Health()[0]
	if !h.Loaded || h.LastError == "" || h.Keys != 1 {
		t.Errorf("Health() after failed fetches = %+v; want loaded, with an error, 1 key", h)
	}
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(now, map[string]any{"sub": "bob"})), nil); code != core.OK {
		t.Fatalf("Verify(key a while JWKS down) = %v; want allowed from the cached set", code)
	}

	// Rotation: the issuer now signs with b; the unknown kid triggers one
	// fetch, which finds it.
	srv.set(200, jwks(t, &rsaA.PublicKey, "a", &rsaB.PublicKey, "b"))
	before := srv.hits.Load()
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaB, "b", claims(now, nil)), nil); code != core.OK {
		t.Fatalf("Verify(rotated key b) = %v; want allowed after an unknown-kid fetch", code)
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Errorf("JWKS fetches for the unknown kid = %d; want 1", got)
	}
	if h := v.Health()[0]; h.LastError != "" || h.Keys != 2 {
		t.Errorf("Health() after rotation = %+v; want healthy with 2 keys", h)
	}
	// Another unknown kid within the interval: refused without a fetch.
	before = srv.hits.Load()
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaB, "c", claims(now, nil)), nil); code != core.TokenUnknownKID {
		t.Fatalf("Verify(unknown kid c) = %v; want token_unknown_kid", code)
	}
	if got := srv.hits.Load() - before; got != 0 {
		t.Errorf("JWKS fetches for a second unknown kid within the interval = %d; want 0 (rate limited)", got)
	}
}

func TestRemoteJWKSNeverLoaded(t *testing.T) {
	keys()
	srv := newJWKSServer(t, nil)
	srv.set(500, nil)
	v := newVerifier(t, nil, remoteIssuer(srv.URL))
	<-srv.seen // the first fetch happened (and failed)
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil)), nil); code != core.JWKSUnavailable {
		t.Fatalf("Verify(key set never loaded) = %v; want jwks_unavailable", code)
	}
	if h := v.Health()[0]; h.Loaded {
		t.Errorf("Health() = %+v; want not loaded", h)
	}
}

func TestDiscovery(t *testing.T) {
	keys()
	keysSrv := newJWKSServer(t, jwks(t, &rsaA.PublicKey, "a"))
	var issuerURL string
	disc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerURL, keysSrv.URL)
	}))
	defer disc.Close()
	issuerURL = disc.URL
	is := issuerConfig("")
	is.JWKS, is.Issuer, is.Discovery = "", issuerURL, true
	v := newVerifier(t, nil, is)
	waitLoaded(t, v)
	c := claims(time.Now(), map[string]any{"iss": issuerURL})
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", c), nil); code != core.OK {
		t.Fatalf("Verify(discovered issuer) = %v; want allowed", code)
	}
}

// TestConcurrentVerificationsCoalesce: many Checks with the same new
// token make one verification and one JWKS fetch.
func TestConcurrentVerificationsCoalesce(t *testing.T) {
	keys()
	srv := newJWKSServer(t, jwks(t, &rsaA.PublicKey, "a"))
	v := newVerifier(t, nil, remoteIssuer(srv.URL))
	waitLoaded(t, v)
	// The issuer rotated to b; the fetch that finds b is held until every
	// Check is waiting.
	release := make(chan struct{})
	srv.mu.Lock()
	srv.body, srv.block = jwks(t, &rsaB.PublicKey, "b"), release
	srv.mu.Unlock()
	before, verBefore := srv.hits.Load(), v.Stats().Verifications
	tok := mint(t, gjwt.SigningMethodRS256, rsaB, "b", claims(time.Now(), nil))
	const n = 20
	var wg sync.WaitGroup
	codes := make([]core.Code, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, codes[i] = v.Verify(context.Background(), tok, nil)
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for v.waiting.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != core.OK {
			t.Fatalf("Verify #%d = %v; want allowed", i, c)
		}
	}
	if got := v.Stats().Verifications - verBefore; got != 1 {
		t.Errorf("verifications = %d; want 1 for %d concurrent Checks of one token", got, n)
	}
	if got := srv.hits.Load() - before; got != 1 {
		t.Errorf("JWKS fetches = %d; want 1", got)
	}
}

func TestExtract(t *testing.T) {
	v, err := New(&config.AuthzJWT{MaxTokenSize: 8192, From: []config.TokenSource{
		{Header: "authorization", Prefix: "Bearer "}, {Header: "x-token"}, {Cookie: "session"},
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		headers map[string]string
		want    string
		code    core.Code
	}{
		{map[string]string{"authorization": "Bearer abc"}, "abc", core.OK},
		{map[string]string{"authorization": "bearer abc"}, "abc", core.OK},
		{map[string]string{"authorization": "Basic abc"}, "", core.CredentialsMissing},
		{map[string]string{"x-token": "t1"}, "t1", core.OK},
		{map[string]string{"cookie": "a=1; session=s1; b=2"}, "s1", core.OK},
		{map[string]string{"cookie": "session=s1; session=s2"}, "", core.CredentialsAmbiguous},
		{map[string]string{"authorization": "Bearer a", "x-token": "b"}, "", core.CredentialsAmbiguous},
		{map[string]string{"authorization": "Bearer a,Bearer b"}, "", core.CredentialsAmbiguous},
		{map[string]string{}, "", core.CredentialsMissing},
	}
	for _, tt := range tests {
		got, code := v.Extract(&core.Request{Headers: tt.headers})
		if got != tt.want || code != tt.code {
			t.Errorf("Extract(%v) = %q, %v; want %q, %v", tt.headers, got, code, tt.want, tt.code)
		}
	}
}

func TestStaticKeyErrors(t *testing.T) {
	keys()
	tests := []struct {
		name string
		is   func(*config.JWTIssuer)
		want string
	}{
		{"jwks not JSON", func(is *config.JWTIssuer) { is.JWKS = "{" }, "jwks: not a JWKS"},
		{"jwks empty", func(is *config.JWTIssuer) { is.JWKS = `{"keys":[]}` }, "holds no keys"},
		{"symmetric key", func(is *config.JWTIssuer) { is.JWKS = `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}` }, "jwks: key 0"},
		{"bad PEM", func(is *config.JWTIssuer) {
			is.JWKS = ""
			is.PublicKeys = []config.PublicKey{{PEM: "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----"}}
		}, "publicKeys[0].pem"},
		{"missing file", func(is *config.JWTIssuer) { is.JWKS = ""; is.JWKSFile = "/nonexistent/jwks.json" }, "jwksFile: cannot read"},
		{"only an encryption key", func(is *config.JWTIssuer) {
			is.JWKS = string(keysDoc(jwkJSON(t, &rsaA.PublicKey, "e", false, map[string]any{"use": "enc"})))
		}, `jwks: none of its keys can verify tokens of this issuer: key 0 (kid "e"): use "enc" is not sig`},
		{"PEM key of an algorithm not allowed", func(is *config.JWTIssuer) {
			is.JWKS, is.Algorithms = "", []config.JWTAlgorithm{"RS256"}
			der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
			is.PublicKeys = []config.PublicKey{{PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}
		}, "publicKeys[0].pem: cannot verify tokens of this issuer: an EC key verifies none of the issuer's algorithms (it fits ES256)"},
	}
	for _, tt := range tests {
		is := issuerConfig("")
		tt.is(&is)
		_, err := New(&config.AuthzJWT{Issuers: []config.JWTIssuer{is}, MaxTokenSize: 8192}, Options{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%s) = %v; want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestPEMKeys(t *testing.T) {
	keys()
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	is := issuerConfig("")
	is.PublicKeys = []config.PublicKey{{KID: "k1", PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}}
	v := newVerifier(t, nil, is)
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodES256, ecKey, "k1", claims(time.Now(), nil)), nil); code != core.OK {
		t.Errorf("Verify(PEM key by kid) = %v; want allowed", code)
	}
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodES256, ecKey, "", claims(time.Now(), nil)), nil); code != core.TokenSignatureInvalid {
		t.Errorf("Verify(no kid, only keyed PEM) = %v; want token_signature_invalid", code)
	}
}

func FuzzParseHeader(f *testing.F) {
	keys()
	f.Add(mint(f, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil)))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHeader(s)
		if err == nil && h.Alg == "" {
			t.Fatalf("ParseHeader(%q) accepted a header without alg", s)
		}
	})
}

// FuzzVerify: no input verifies without the key, and none panics.
func FuzzVerify(f *testing.F) {
	keys()
	good := mint(f, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil))
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add(noneToken(claims(time.Now(), nil)))
	f.Add(swapAlg(f, good, "HS256"))
	v := newVerifier(f, nil, issuerConfig(string(jwks(f, &rsaA.PublicKey, "a"))))
	f.Fuzz(func(t *testing.T, s string) {
		vt, code := v.Verify(context.Background(), s, nil)
		if code == core.OK && s != good {
			// Only a token really signed by the key may pass; the fuzzer
			// cannot forge one, so any other success is a bug.
			if vt.Identity.Subject != "alice" {
				t.Fatalf("Verify(%q) = allowed with %+v", s, &vt.Identity)
			}
		}
	})
}

var _ crypto.PublicKey = (*rsa.PublicKey)(nil)

func stdB64(b []byte) string { return base64Std.EncodeToString(b) }

var base64Std = base64pkg.StdEncoding

func TestJWKSFile(t *testing.T) {
	keys()
	file := t.TempDir() + "/jwks.json"
	// As an identity provider publishes it: a signing key and an
	// encryption key, which is left out.
	doc := keysDoc(jwkJSON(t, &rsaA.PublicKey, "a", false, nil), jwkJSON(t, &rsaB.PublicKey, "enc", false, map[string]any{"use": "enc"}))
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	is := issuerConfig("")
	is.JWKSFile = config.FilePath(file)
	v := newVerifier(t, nil, is)
	if _, code := v.Verify(context.Background(), mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil)), nil); code != core.OK {
		t.Errorf("Verify(key from jwksFile) = %v; want allowed", code)
	}
	if h := v.Health(); len(h) != 1 || !h[0].Loaded || h[0].Remote || h[0].Keys != 1 {
		t.Errorf("Health() = %+v; want a loaded static set of 1 key", h)
	}
}

// TestLateCheckUsesCache: a Check that missed the cache just before the
// verification of the same token finished (it reaches the coalescing
// group after the group emptied) takes the cached result; it does not
// verify the token again.
func TestLateCheckUsesCache(t *testing.T) {
	keys()
	v := newVerifier(t, nil, issuerConfig(string(jwks(t, &rsaA.PublicKey, "a"))))
	tok := mint(t, gjwt.SigningMethodRS256, rsaA, "a", claims(time.Now(), nil))
	if _, code := v.Verify(context.Background(), tok, nil); code != core.OK {
		t.Fatalf("Verify = %v; want allowed", code)
	}
	before := v.Stats().Verifications
	key := sha256.Sum256([]byte(tok))
	if vt, code := v.verifyOnce(context.Background(), &key, tok); code != core.OK || vt == nil {
		t.Fatalf("verifyOnce(cached token) = %v, %v; want allowed", vt, code)
	}
	if got := v.Stats().Verifications - before; got != 0 {
		t.Errorf("verifications = %d; want 0 for a token already in the cache", got)
	}
}
