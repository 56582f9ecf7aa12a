package harness

import (
	"crypto/rsa"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The demo issuer of examples/gatehouse.yaml, whose private key is
// published in examples/demo (demo-only).
const (
	DemoIssuer   = "https://demo.gatehouse.invalid"
	DemoAudience = "gatehouse-demo"
	DemoKID      = "48ArJedI763sbcsbXqfSXESQz1GDUt0qV_gqHouJdDA"
	// DemoJWKS is the demo issuer's public key set, as the example
	// configs hold it inline.
	DemoJWKS = `{"keys":[{"alg":"RS256","e":"AQAB","kid":"48ArJedI763sbcsbXqfSXESQz1GDUt0qV_gqHouJdDA","kty":"RSA","n":"5vZhxA_RPuBPzUwqTUbzZifJLOnhOQSQvzcbnw6Lcc7bhKUToPQ7CZyfbAQSvlWch1VKdUiCW7mGWUG4mOol91cG2KaYrOfOERnt_V62BVFCGfGiNReVY4jjg3V0xAPjdGXCBCFXOqohWMBKzKTdFPogPPC_8oYei1myD2ZxlJgGwHJi3qNA-36Chlzh_UDQzDSphYG7j0GqcD4LilC7IIrYJ3C5s5XtWaCHquZAcBv8OJ4fC3QlPzGjH8T9NiDqDNfy75i33-u-pg7eSwX0kr--JX31sbju__4Ze0gsZr32M672my9deqgn841iu1zfiXWC28g7bDdLxsNVeGMOOw","use":"sig"}]}`
	// DemoAPIKey is the demo API key (subject demo-partner, tier pro,
	// scope hello:read).
	DemoAPIKey = "gh_demo_apikey_0123456789abcdef"
)

var demoKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "examples", "demo", "DEMO-ONLY-private-key.pem"))
	if err != nil {
		return nil, err
	}
	return jwt.ParseRSAPrivateKeyFromPEM(b)
})

// DemoToken mints an RS256 token of the demo issuer for subject sub with
// tier (the plan claim) and space-separated scopes, valid for an hour.
// Extra claims are added or override those.
func DemoToken(t testing.TB, sub, tier, scope string, extra map[string]any) string {
	t.Helper()
	key, err := demoKey()
	if err != nil {
		t.Fatalf("demo key: %v", err)
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": DemoIssuer, "aud": DemoAudience, "sub": sub, "plan": tier, "scope": scope,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = DemoKID
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
