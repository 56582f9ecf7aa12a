package jwt

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/MicahParks/jwkset"
)

// minRSABits is the shortest RSA key accepted (RFC 7518, section 3.3).
const minRSABits = 2048

// rsaAlgs are the algorithms an RSA key verifies.
var rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// unusable says why jwk cannot verify tokens of an issuer that allows
// algs, or "" when it can. A key set is judged by its usable keys only:
// encryption keys, symmetric keys, keys for an algorithm the issuer does
// not allow, RSA keys under 2048 bits, and private keys (which a JWKS
// must never publish: whoever read it can mint tokens) verify nothing
// here.
func unusable(jwk jwkset.JWK, algs map[string]bool) string {
	m := jwk.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return fmt.Sprintf("use %q is not sig", m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return "key_ops does not include verify"
	}
	var fits []string
	switch k := jwk.Key().(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits {
			return fmt.Sprintf("an RSA key of %d bits is too short; RFC 7518 asks for at least %d", n, minRSABits)
		}
		fits = rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			fits = []string{"ES256"}
		case elliptic.P384():
			fits = []string{"ES384"}
		case elliptic.P521():
			fits = []string{"ES512"}
		}
	case ed25519.PublicKey:
		fits = []string{"EdDSA"}
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, *ecdh.PrivateKey:
		return "it is a private key: a JWKS publishes public keys only, and whoever read this one can mint tokens"
	}
	if len(fits) == 0 {
		return fmt.Sprintf("an %s key verifies no signature algorithm gatehouse accepts", m.KTY)
	}
	if a := m.ALG.String(); a != "" {
		switch {
		case !slices.Contains(fits, a):
			return fmt.Sprintf("alg %q does not fit an %s key", a, m.KTY)
		case !algs[a]:
			return fmt.Sprintf("alg %q is not in the issuer's algorithms", a)
		}
		return ""
	}
	for _, a := range fits {
		if algs[a] {
			return ""
		}
	}
	return fmt.Sprintf("an %s key verifies none of the issuer's algorithms (it fits %s)", m.KTY, strings.Join(fits, ", "))
}

// keyIdentity identifies a key for telling what a refresh removed: its
// kid, its alg and its public key. A kid that comes back with another
// key is a removal (and an addition).
func keyIdentity(jwk jwkset.JWK) string {
	m := jwk.Marshal()
	key := jwk.Key()
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = pk.Public()
	}
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		// Usable keys always marshal; this keeps the identity total.
		der = []byte(fmt.Sprintf("%s/%s/%s/%s/%s", m.KTY, m.CRV, m.N, m.X, m.Y))
	}
	return m.KID + "\x00" + m.ALG.String() + "\x00" + string(der)
}

// kidList renders key ids for a log or audit line. Key ids come from the
// JWKS endpoint, so they are quoted, cut short and few.
func kidList(kids []string) string {
	const maxKids, maxLen = 10, 64
	var b strings.Builder
	for i, k := range kids {
		if i == maxKids {
			fmt.Fprintf(&b, " and %d more", len(kids)-maxKids)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(k) > maxLen {
			k = k[:maxLen] + "…"
		}
		if k == "" {
			b.WriteString("(no kid)")
			continue
		}
		fmt.Fprintf(&b, "%q", k)
	}
	return b.String()
}
