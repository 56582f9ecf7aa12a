package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// runMint writes a fresh RSA-2048 key's JWKS (RS256, kid = RFC 7638
// thumbprint) and N valid tokens. The private key is not kept.
func runMint(args []string) error {
	fs := flag.NewFlagSet("mint-jwt", flag.ExitOnError)
	n := fs.Int("n", 1000, "tokens to mint")
	jwksOut := fs.String("jwks-out", "", "JWKS output file")
	tokensOut := fs.String("tokens-out", "", "tokens output file (one per line)")
	iss := fs.String("iss", "https://issuer.example", "iss claim")
	aud := fs.String("aud", "gatehouse", "aud claim (empty = none)")
	ttl := fs.Duration("ttl", 24*time.Hour, "exp = now + ttl")
	_ = fs.Parse(args)
	if *jwksOut == "" || *tokensOut == "" || *n < 1 {
		return fmt.Errorf("mint-jwt needs -n >= 1, -jwks-out and -tokens-out")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	nb := b64(key.N.Bytes())
	eb := b64(big.NewInt(int64(key.E)).Bytes())
	thumb := sha256.Sum256([]byte(`{"e":"` + eb + `","kty":"RSA","n":"` + nb + `"}`))
	kid := b64(thumb[:])
	jwks, _ := json.MarshalIndent(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": nb, "e": eb,
	}}}, "", "  ")
	if err := os.WriteFile(*jwksOut, append(jwks, '\n'), 0o644); err != nil {
		return err
	}
	plans := []string{"free", "pro", "enterprise"}
	now := time.Now()
	var b strings.Builder
	for i := range *n {
		claims := jwt.MapClaims{
			"iss": *iss, "sub": fmt.Sprintf("user-%d", i), "plan": plans[i%len(plans)],
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(*ttl).Unix(), "scope": "read write",
		}
		if *aud != "" {
			claims["aud"] = *aud
		}
		t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		t.Header["kid"] = kid
		s, err := t.SignedString(key)
		if err != nil {
			return err
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return os.WriteFile(*tokensOut, []byte(b.String()), 0o600)
}
