package jwt

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/MicahParks/jwkset"

	"github.com/gatehouse/gatehouse/internal/config"
)

// staticKeys are an issuer's keys written in config or in a file it names
// (jwks, jwksFile, publicKeys). They are read at every config load, never
// reused across loads: an edited jwksFile takes effect at the reload that
// reads it, as it does in validate and check.
type staticKeys struct {
	set *jwkset.MemoryJWKSet
	n   int
}

// loadStatic reads and checks the static keys of is. A JWKS document may
// hold keys that cannot verify tokens of the issuer (an encryption key
// beside the signing keys, as an identity provider publishes them): those
// are left out, but a document with none that can is an error, and so is
// a symmetric key (a secret written in config) or a PEM key that cannot.
func loadStatic(is *config.JWTIssuer, algs map[string]bool) (*staticKeys, error) {
	sk := &staticKeys{set: jwkset.NewMemoryStorage()}
	if is.JWKS != "" {
		if err := sk.addJWKS([]byte(is.JWKS), algs); err != nil {
			return nil, &config.FieldError{Path: "jwks", Msg: err.Error()}
		}
	}
	if is.JWKSFile != "" {
		b, err := os.ReadFile(string(is.JWKSFile))
		if err != nil {
			return nil, &config.FieldError{Path: "jwksFile", Msg: fmt.Sprintf("cannot read: %v", err)}
		}
		if err := sk.addJWKS(b, algs); err != nil {
			return nil, &config.FieldError{Path: "jwksFile", Msg: err.Error()}
		}
	}
	for i, pk := range is.PublicKeys {
		path := config.Path("publicKeys").Index(i).Field("pem")
		key, err := parsePublicKey(pk.PEM)
		if err != nil {
			return nil, &config.FieldError{Path: path, Msg: err.Error()}
		}
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: pk.KID}})
		if err != nil {
			return nil, &config.FieldError{Path: path, Msg: fmt.Sprintf("unsupported key: %v", err)}
		}
		if why := unusable(jwk, algs); why != "" {
			return nil, &config.FieldError{Path: path, Msg: "cannot verify tokens of this issuer: " + why}
		}
		if err := sk.set.KeyWrite(context.Background(), jwk); err != nil {
			return nil, err
		}
		sk.n++
	}
	return sk, nil
}

func (sk *staticKeys) addJWKS(b []byte, algs map[string]bool) error {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("not a JWKS document: %v", err)
	}
	if len(set.Keys) == 0 {
		return errors.New("the JWKS holds no keys")
	}
	var skipped []string
	n := 0
	for i, m := range set.Keys {
		if m.KTY == jwkset.KtyOct {
			return fmt.Errorf("key %d: only public keys verify tokens", i)
		}
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return fmt.Errorf("key %d: %v", i, err)
		}
		if why := unusable(jwk, algs); why != "" {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %s", i, m.KID, why))
			continue
		}
		if err := sk.set.KeyWrite(context.Background(), jwk); err != nil {
			return err
		}
		n++
	}
	sk.n += n
	if n == 0 {
		return fmt.Errorf("none of its keys can verify tokens of this issuer: %s", strings.Join(skipped, "; "))
	}
	return nil
}

func parsePublicKey(s string) (any, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("is not a PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	}
	return nil, fmt.Errorf("a %q PEM block is not a public key; use PUBLIC KEY", block.Type)
}
