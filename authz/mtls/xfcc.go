package mtls

import (
	"errors"
	"fmt"
	"strings"
)

// Element is one element of an x-forwarded-client-cert header: what one
// proxy saw of its downstream peer's certificate. See Envoy's
// config/http/http_conn_man/headers x-forwarded-client-cert.
type Element struct {
	// By is the URI SAN of the proxy's own certificate.
	By []string
	// Hash is the SHA-256 of the client certificate, hex.
	Hash string
	// Cert and Chain are URL-encoded PEM.
	Cert  string
	Chain string
	// Subject is the certificate's subject, as Envoy renders it.
	Subject string
	// URI and DNS are the certificate's SANs.
	URI []string
	DNS []string
}

// Limits of ParseXFCC: a proxy chain is short, and every byte of the
// header is attacker-supplied unless it came through a trusted hop.
const (
	maxXFCCLen      = 64 << 10
	maxXFCCElements = 16
)

var (
	errXFCCTooLong  = errors.New("xfcc: header too long")
	errXFCCTooMany  = errors.New("xfcc: too many elements")
	errXFCCSyntax   = errors.New("xfcc: syntax error")
	errXFCCDupField = errors.New("xfcc: field repeated in an element")
)

// ParseXFCC parses an x-forwarded-client-cert header value: elements
// separated by ",", each a ";"-separated list of key=value pairs. A value
// may be double-quoted, and then holds ",", ";" and "=" literally and
// \" for a quote. Keys are case-insensitive; unknown keys are skipped
// (a later Envoy may add some), a repeated single-valued key is an error.
func ParseXFCC(s string) ([]Element, error) {
	if len(s) > maxXFCCLen {
		return nil, errXFCCTooLong
	}
	var out []Element
	p := xfccParser{s: s}
	for {
		if len(out) == maxXFCCElements {
			return nil, errXFCCTooMany
		}
		var e Element
		seen := 0
		for {
			p.skipSpace()
			key, ok := p.key()
			if !ok {
				return nil, fmt.Errorf("%w at byte %d: expected key=value", errXFCCSyntax, p.i)
			}
			val, err := p.value()
			if err != nil {
				return nil, err
			}
			bit := 0
			switch strings.ToLower(key) {
			case "by":
				e.By = append(e.By, val)
			case "hash":
				bit, e.Hash = 1, val
			case "cert":
				bit, e.Cert = 2, val
			case "chain":
				bit, e.Chain = 4, val
			case "subject":
				bit, e.Subject = 8, val
			case "uri":
				e.URI = append(e.URI, val)
			case "dns":
				e.DNS = append(e.DNS, val)
			}
			if bit != 0 {
				if seen&bit != 0 {
					return nil, fmt.Errorf("%w: %s", errXFCCDupField, key)
				}
				seen |= bit
			}
			p.skipSpace()
			if p.done() {
				return append(out, e), nil
			}
			c := p.s[p.i]
			p.i++
			if c == ',' {
				break
			}
			if c != ';' {
				return nil, fmt.Errorf("%w at byte %d: unexpected %q", errXFCCSyntax, p.i-1, c)
			}
		}
		out = append(out, e)
	}
}

type xfccParser struct {
	s string
	i int
}

func (p *xfccParser) done() bool { return p.i >= len(p.s) }

func (p *xfccParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// key reads a key and its "=".
func (p *xfccParser) key() (string, bool) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '=' {
			k := p.s[start:p.i]
			p.i++
			return k, k != ""
		}
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
		p.i++
	}
	return "", false
}

// value reads a bare value (up to ";" or ",") or a quoted one.
func (p *xfccParser) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		for p.i < len(p.s) {
			c := p.s[p.i]
			switch c {
			case '\\':
				if p.i+1 >= len(p.s) {
					return "", fmt.Errorf("%w: dangling escape", errXFCCSyntax)
				}
				b.WriteByte(p.s[p.i+1])
				p.i += 2
				continue
			case '"':
				p.i++
				return b.String(), nil
			}
			b.WriteByte(c)
			p.i++
		}
		return "", fmt.Errorf("%w: unterminated quoted value", errXFCCSyntax)
	}
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == ';' || c == ',' {
			break
		}
		if c == '"' || c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%w at byte %d: %q in an unquoted value", errXFCCSyntax, p.i, c)
		}
		p.i++
	}
	return strings.TrimRight(p.s[start:p.i], " \t"), nil
}
