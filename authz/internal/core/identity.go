package core

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// Identity is a verified caller: only ever built from verified data (a
// signature, a certificate, a key hash), never from a client header.
type Identity struct {
	// Method is the auth method (contract.AuthMethod*).
	Method  string
	Subject string
	Issuer  string
	// SPIFFEID is the caller's SPIFFE id (mTLS).
	SPIFFEID string
	// Tier is the tier the credential names ("" = the route's default).
	Tier   string
	Scopes []string
	// Claims are a JWT's claims (nil for other methods). Read only.
	Claims map[string]any
	// KeyID names the credential without revealing it: a JWT's kid, an
	// API key's id, a webhook source.
	KeyID string
	// Expires is when the credential stops being valid (zero = never).
	Expires time.Time
	// Derived holds what the engine built from this identity for the last
	// route it was used on (the upstream headers and metadata), so that a
	// cached token or a configured API key costs no rebuilding. Shared
	// identities are read by many Checks at once: it is set atomically
	// and what it points to is never modified.
	Derived atomic.Pointer[Derived]
}

// Derived is an engine's output for one identity on one route.
type Derived struct {
	Route any
	Value any
}

// HasScope reports whether s is granted.
func (id *Identity) HasScope(s string) bool {
	for _, g := range id.Scopes {
		if g == s {
			return true
		}
	}
	return false
}

// Request is the HTTP request Envoy asks about, taken from the
// CheckRequest once. Header names are lower-case; Envoy joins repeated
// headers with ",".
type Request struct {
	Headers map[string]string
	Method  string
	Host    string
	// Path is the :path with its query string.
	Path   string
	Scheme string
	// Body is the request body (raw_body, or body when Envoy did not pack
	// it as bytes); BodyPresent tells an empty body from none sent.
	Body        []byte
	BodyPresent bool
	// PartialBody is true when Envoy truncated the body.
	PartialBody bool
	// SourceAddress is the downstream peer's IP ("" when unknown).
	SourceAddress string
	// SourcePrincipal is the URI SAN (or subject) of the peer certificate.
	SourcePrincipal string
	// SourceCertificate is the URL-encoded PEM peer certificate.
	SourceCertificate string
	// RouteID is the context extension route id ("" = none).
	RouteID string
}

// Header returns a header value and whether it was sent.
func (r *Request) Header(name string) (string, bool) {
	v, ok := r.Headers[name]
	return v, ok
}

// PathOnly is the path without its query string: what audit lines hold.
func (r *Request) PathOnly() string {
	if i := strings.IndexByte(r.Path, '?'); i >= 0 {
		return r.Path[:i]
	}
	return r.Path
}

// SourceAddr parses SourceAddress.
func (r *Request) SourceAddr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(r.SourceAddress)
	return a, err == nil
}

// Explainer receives the steps of a decision, for `gatehouse check`. A
// nil Explainer records nothing and costs nothing.
type Explainer interface {
	Step(format string, args ...any)
}
