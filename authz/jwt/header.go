package jwt

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Header is the part of a JOSE header gatehouse looks at before choosing
// an issuer's keys.
type Header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
	// Crit is refused: no critical extension is understood (RFC 7515 4.1.11).
	Crit []string `json:"crit"`
}

var (
	errShape  = errors.New("jwt: not a compact JWS (three base64url parts)")
	errHeader = errors.New("jwt: bad JOSE header")
)

// maxHeader bounds the decoded JOSE header; real ones are under 200 bytes.
const maxHeader = 1024

// ParseHeader checks the compact shape of a token (three non-empty
// base64url parts, nothing else) and decodes its header. It is the first
// thing done with an untrusted token, so it is strict and cheap.
func ParseHeader(token string) (Header, error) {
	var h Header
	dots := 0
	first := -1
	last := -1
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			dots++
			if dots == 1 {
				first = i
			} else {
				last = i
			}
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return h, errShape
		}
	}
	// An empty signature part is left to the algorithm check ("none").
	if dots != 2 || first == 0 || last == first+1 {
		return h, errShape
	}
	seg := token[:first]
	if base64.RawURLEncoding.DecodedLen(len(seg)) > maxHeader {
		return h, errHeader
	}
	var buf [maxHeader]byte
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(seg))
	if err != nil {
		return h, errHeader
	}
	if err := json.Unmarshal(buf[:n], &h); err != nil {
		return h, errHeader
	}
	if h.Alg == "" || len(h.Crit) > 0 {
		return h, errHeader
	}
	return h, nil
}
