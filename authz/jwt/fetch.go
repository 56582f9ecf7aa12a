package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/gatehouse/gatehouse/internal/config"
)

// maxDiscoverySize bounds an OpenID discovery document; real ones are a
// few KiB.
const maxDiscoverySize = 1 << 20

// Reasons a JWKS or discovery fetch fails: the values of the reason label
// of gatehouse_authz_jwks_fetch_errors_total, one closed set.
const (
	FailDiscovery   = "discovery"         // no usable discovery document
	FailInsecureURI = "insecure_jwks_uri" // an https issuer named an http:// jwks_uri
	FailUnreachable = "unreachable"       // connection, TLS, timeout, refused redirect
	FailHTTPStatus  = "http_status"       // an answer other than 200
	FailTooLarge    = "too_large"         // larger than maxJWKSSize
	FailMalformed   = "malformed"         // not a JWKS, or a key that does not parse
	FailNoUsableKey = "no_usable_key"     // a JWKS without one key that can verify
)

// failReasons lists the fetch failure reasons, in a fixed order (the
// index of KeySet's counters).
var failReasons = [...]string{FailDiscovery, FailInsecureURI, FailUnreachable, FailHTTPStatus, FailTooLarge, FailMalformed, FailNoUsableKey}

// tooLargeError is a response body past its cap. It is returned by the
// body itself (or by the transport, for a declared Content-Length), so
// that jwkset's decoder stops reading instead of buffering the rest.
type tooLargeError struct {
	what string
	max  int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("jwt: %s is larger than %s", e.what, config.ByteSize(e.max))
}

// errInsecureJWKSURI is an https issuer whose discovery document names a
// plain http:// jwks_uri.
var errInsecureJWKSURI = errors.New("jwt: refusing a plain http:// jwks_uri from the discovery document of an https issuer")

// discoveryError marks a failure to read the discovery document.
type discoveryError struct{ err error }

func (e *discoveryError) Error() string { return "discovery: " + e.err.Error() }
func (e *discoveryError) Unwrap() error { return e.err }

// failReason classifies a fetch error into one of failReasons.
func failReason(err error) string {
	var tl *tooLargeError
	var nu *noUsableKeyError
	var de *discoveryError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.Is(err, errInsecureJWKSURI):
		return FailInsecureURI
	case errors.As(err, &tl):
		return FailTooLarge
	case errors.As(err, &nu):
		return FailNoUsableKey
	case errors.As(err, &de):
		return FailDiscovery
	case errors.Is(err, jwkset.ErrInvalidHTTPStatusCode):
		return FailHTTPStatus
	case errors.As(err, &ue), errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return FailUnreachable
	}
	return FailMalformed
}

// cappedClient is c with every response body capped at max bytes: jwkset
// decodes a JWKS straight from the body and has no limit of its own.
func cappedClient(c *http.Client, max int64) *http.Client {
	var cc http.Client
	if c != nil {
		cc = *c
	}
	base := cc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cc.Transport = &capTransport{base: base, max: max}
	return &cc
}

type capTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, &tooLargeError{what: "the JWKS response", max: t.max}
	}
	resp.Body = &capBody{rc: resp.Body, left: t.max, what: "the JWKS response", max: t.max}
	return resp, nil
}

// capBody fails a read that goes past max bytes, rather than truncating
// silently (a truncated JWKS would only fail to decode, saying less).
type capBody struct {
	rc   io.ReadCloser
	left int64
	what string
	max  int64
	err  error
}

func (b *capBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte more than is left tells a body of exactly max bytes from
	// a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) <= b.left {
		b.left -= int64(n)
		return n, err
	}
	n = int(b.left)
	b.left = 0
	b.err = &tooLargeError{what: b.what, max: b.max}
	return n, b.err
}

func (b *capBody) Close() error { return b.rc.Close() }

// discover reads the jwks_uri of an OpenID Provider from its
// /.well-known/openid-configuration, checking that the document is the
// issuer's own (OpenID Connect Discovery 1.0, section 4.3) and that it
// does not send an https issuer's keys over plain HTTP (unless
// allowLoopbackHTTP and the jwks_uri is on this host).
func discover(ctx context.Context, c *http.Client, issuer string, timeout time.Duration, allowLoopbackHTTP bool) (string, error) {
	u, err := discoverURI(ctx, c, issuer, timeout)
	if err != nil {
		return "", &discoveryError{err}
	}
	if strings.HasPrefix(issuer, "https://") && strings.HasPrefix(u, "http://") && !(allowLoopbackHTTP && config.LoopbackHTTP(u)) {
		hint := "serve the keys over https"
		if config.LoopbackHTTP(u) {
			hint = "set allowLoopbackHTTPJWKS: true to allow it on this host"
		}
		return "", fmt.Errorf("%w: jwks_uri %q; %s", errInsecureJWKSURI, u, hint)
	}
	return u, nil
}

func discoverURI(ctx context.Context, c *http.Client, issuer string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	body := &capBody{rc: resp.Body, left: maxDiscoverySize, what: "the discovery document", max: maxDiscoverySize}
	if err := json.NewDecoder(body).Decode(&doc); err != nil {
		return "", fmt.Errorf("%s: not a discovery document: %w", u, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("%s: names issuer %q, not %q", u, doc.Issuer, issuer)
	}
	if !strings.HasPrefix(doc.JWKSURI, "https://") && !strings.HasPrefix(doc.JWKSURI, "http://") {
		return "", fmt.Errorf("%s: jwks_uri %q is not an http(s) URL", u, doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}
