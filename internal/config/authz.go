package config

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"math"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Authz configures the ext_authz server (envoy.service.auth.v3.Authorization):
// the identity providers and credentials it accepts, shared by every route,
// and what it does with requests no route matches. Each route's own access
// policy is its authz: section (RouteAuthz).
type Authz struct {
	// Address is the gRPC listen address of the ext_authz server.
	Address string `yaml:"address" default:"127.0.0.1:9191"`
	// Realm is the realm named in WWW-Authenticate challenges.
	Realm string `yaml:"realm" default:"gatehouse"`
	// DefaultTier is the tier of an authenticated caller whose credential
	// and route name none.
	DefaultTier string `yaml:"defaultTier" default:"default"`
	// Unmatched decides requests that carry no route id and match no route.
	Unmatched Unmatched `yaml:"unmatched"`
	// JWT lists the token issuers trusted by routes that accept JWTs.
	JWT *AuthzJWT `yaml:"jwt,omitempty"`
	// APIKeys are the keys of integration partners, kept as hashes only.
	APIKeys *AuthzAPIKeys `yaml:"apiKeys,omitempty"`
	// MTLS says how client certificates and SPIFFE ids are trusted.
	MTLS *AuthzMTLS `yaml:"mtls,omitempty"`
	// Webhooks are the senders of signed webhooks, by name.
	Webhooks []WebhookSource `yaml:"webhooks,omitempty"`
}

// AuthzAction is what happens to a request: allow or deny.
type AuthzAction string

// Authz actions.
const (
	ActionAllow AuthzAction = "allow"
	ActionDeny  AuthzAction = "deny"
)

// EnumValues implements Enum.
func (AuthzAction) EnumValues() []string { return []string{"allow", "deny"} }

// EnumNoun implements Enum.
func (AuthzAction) EnumNoun() string { return "an action" }

// Unmatched decides requests that match no route. Denying them is the
// default: a path nobody declared is nobody's to open.
type Unmatched struct {
	// Action applies to hosts that no entry of Hosts names.
	Action AuthzAction `yaml:"action" default:"deny"`
	// Hosts override Action per host (patterns as in route match hosts);
	// the first entry naming the host wins.
	Hosts []UnmatchedHost `yaml:"hosts,omitempty"`
}

// UnmatchedHost overrides the unmatched action for some hosts.
type UnmatchedHost struct {
	// Hosts are host patterns as in route match hosts.
	Hosts []string `yaml:"hosts"`
	// Action is allow or deny for these hosts.
	Action AuthzAction `yaml:"action"`
}

// AuthzJWT configures JSON Web Token verification.
type AuthzJWT struct {
	// Issuers are the token issuers trusted, each with its keys.
	Issuers []JWTIssuer `yaml:"issuers"`
	// From lists where a token is read, in order; empty means the
	// Authorization header with the Bearer scheme (RFC 6750).
	From []TokenSource `yaml:"from,omitempty"`
	// MaxTokenSize refuses larger tokens before any parsing.
	MaxTokenSize ByteSize `yaml:"maxTokenSize" default:"8KiB"`
	// CacheSize bounds the verified-token cache (0 turns it off).
	CacheSize int `yaml:"cacheSize" default:"100000"`
	// CacheTTL bounds how long a verified token is trusted without a new
	// signature check; never past its exp.
	CacheTTL Duration `yaml:"cacheTTL" default:"5m"`
}

// TokenSource is one place a token is read from: a header (optionally
// with a scheme prefix such as "Bearer ") or a cookie.
type TokenSource struct {
	// Header is a lower-case header name.
	Header string `yaml:"header,omitempty"`
	// Prefix is stripped from the header value (case-insensitively); a
	// value without it is not a token of this source.
	Prefix string `yaml:"prefix,omitempty"`
	// Cookie is a cookie name.
	Cookie string `yaml:"cookie,omitempty"`
}

// JWTAlgorithm is a JWS signature algorithm. Only asymmetric algorithms
// are accepted: a verifier holding an HMAC secret could also mint tokens,
// and "none" is never an algorithm.
type JWTAlgorithm string

// EnumValues implements Enum.
func (JWTAlgorithm) EnumValues() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// EnumNoun implements Enum.
func (JWTAlgorithm) EnumNoun() string { return "a JWT algorithm (asymmetric only)" }

// JWTIssuer is one trusted token issuer and where its keys come from:
// a JWKS URL, OIDC discovery from the issuer URL, a local JWKS file,
// inline JWKS JSON, or inline PEM public keys (several may be combined).
type JWTIssuer struct {
	// Name is how routes refer to the issuer.
	Name string `yaml:"name"`
	// Issuer is the exact iss claim of its tokens.
	Issuer string `yaml:"issuer"`
	// Audiences: a token must name at least one of them in aud.
	Audiences []string `yaml:"audiences,omitempty"`
	// Algorithms is the allow-list of signature algorithms.
	Algorithms []JWTAlgorithm `yaml:"algorithms"`
	// JWKSURL is fetched, cached and refreshed in the background.
	JWKSURL string `yaml:"jwksURL,omitempty"`
	// Discovery finds the JWKS URL in the issuer's
	// /.well-known/openid-configuration.
	Discovery bool `yaml:"discovery,omitempty"`
	// JWKSFile is a local JWKS document, read at each config load.
	JWKSFile FilePath `yaml:"jwksFile,omitempty"`
	// JWKS is an inline JWKS document (JSON).
	JWKS string `yaml:"jwks,omitempty"`
	// PublicKeys are inline PEM public keys.
	PublicKeys []PublicKey `yaml:"publicKeys,omitempty"`
	// Leeway tolerates clock skew on exp, nbf and iat.
	Leeway Duration `yaml:"leeway" default:"30s"`
	// RefreshInterval is how often the JWKS URL is fetched again.
	RefreshInterval Duration `yaml:"refreshInterval" default:"15m"`
	// UnknownKidInterval is the least time between two fetches made
	// because a token named a key id not in the cached set.
	UnknownKidInterval Duration `yaml:"unknownKidInterval" default:"1m"`
	// FetchTimeout bounds one JWKS or discovery request.
	FetchTimeout Duration `yaml:"fetchTimeout" default:"5s"`
	// SubjectClaim holds the caller's subject.
	SubjectClaim string `yaml:"subjectClaim" default:"sub"`
	// ScopeClaim holds the scopes: a space-separated string or a list
	// (scp is read as well when this claim is absent).
	ScopeClaim string `yaml:"scopeClaim" default:"scope"`
	// TierClaim, when set, holds the caller's tier (e.g. plan).
	TierClaim string `yaml:"tierClaim,omitempty"`
	// Tiers, when set, are the only tier values accepted from TierClaim;
	// another value falls back to the route's default tier.
	Tiers []string `yaml:"tiers,omitempty"`
}

// PublicKey is an inline PEM public key with an optional key id; a key
// without kid verifies only tokens without kid.
type PublicKey struct {
	// KID is the key id tokens name in their header.
	KID string `yaml:"kid,omitempty"`
	// PEM is a PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block.
	PEM string `yaml:"pem"`
}

// AuthzAPIKeys configures API keys.
type AuthzAPIKeys struct {
	// Header is where the key is read.
	Header string `yaml:"header" default:"x-api-key"`
	// Keys are the configured keys.
	Keys []APIKey `yaml:"keys,omitempty"`
	// File is a YAML file holding more keys (a list of the same entries),
	// read at each config load.
	File FilePath `yaml:"file,omitempty"`
}

// APIKey is one key, kept only as a hash: "sha256:<hex>" or
// "sha512:<hex>" of the key (see docs/authz.md for how to make one).
type APIKey struct {
	// ID names the key in audit lines and metrics; never the key itself.
	ID string `yaml:"id"`
	// Hash is sha256:<hex> or sha512:<hex> of the key.
	Hash string `yaml:"hash"`
	// Subject is the partner the key identifies.
	Subject string `yaml:"subject"`
	// Tier is the key's tier (default: the route's).
	Tier string `yaml:"tier,omitempty"`
	// Scopes are granted to the key.
	Scopes []string `yaml:"scopes,omitempty"`
	// ExpiresAt (RFC 3339) ends the key; an expired key is refused with
	// its own reason code. Several keys per subject let a new key overlap
	// the old one during rotation.
	ExpiresAt string `yaml:"expiresAt,omitempty"`
	// Revoked refuses the key with its own reason code.
	Revoked bool `yaml:"revoked,omitempty"`
}

// AuthzMTLS configures identity from client certificates.
type AuthzMTLS struct {
	// TrustDomains hold the SPIFFE trust bundles certificates are verified
	// against when VerifyCertificate is on.
	TrustDomains []TrustDomain `yaml:"trustDomains,omitempty"`
	// VerifyCertificate checks the peer certificate Envoy forwards
	// (include_peer_certificate) against the bundle of its trust domain,
	// and refuses a principal that comes without a certificate.
	VerifyCertificate bool `yaml:"verifyCertificate,omitempty"`
	// XFCC says when x-forwarded-client-cert is believed; absent = never.
	XFCC *XFCC `yaml:"xfcc,omitempty"`
	// Tiers map SPIFFE ids (exact, or a path pattern with *) to tiers.
	Tiers []SPIFFETier `yaml:"tiers,omitempty"`
}

// TrustDomain is a SPIFFE trust domain and its X.509 bundle (CA
// certificates as PEM, or a SPIFFE bundle JSON document).
type TrustDomain struct {
	// Name is the trust domain (example.org).
	Name string `yaml:"name"`
	// BundleFile is a PEM or SPIFFE bundle file.
	BundleFile FilePath `yaml:"bundleFile,omitempty"`
	// Bundle is the same, inline.
	Bundle string `yaml:"bundle,omitempty"`
}

// XFCC trusts x-forwarded-client-cert only from known hops.
type XFCC struct {
	// TrustedProxies are the CIDRs of direct peers allowed to send XFCC.
	TrustedProxies []string `yaml:"trustedProxies,omitempty"`
	// TrustedProxyIDs are SPIFFE ids of direct mTLS peers allowed to send it.
	TrustedProxyIDs []string `yaml:"trustedProxyIDs,omitempty"`
	// Hop picks the element describing the client, counted from the end
	// (1 = the last element, appended by the nearest proxy).
	Hop int `yaml:"hop" default:"1"`
}

// SPIFFETier maps SPIFFE ids to a tier.
type SPIFFETier struct {
	// ID is a SPIFFE id; its path may hold * for one segment.
	ID string `yaml:"id"`
	// Tier is the tier of matching ids.
	Tier string `yaml:"tier"`
}

// WebhookScheme is a webhook signature scheme.
type WebhookScheme string

// Webhook schemes.
const (
	SchemeGitHub   WebhookScheme = "github"
	SchemeStripe   WebhookScheme = "stripe"
	SchemeSlack    WebhookScheme = "slack"
	SchemeStandard WebhookScheme = "standard"
	SchemeShopify  WebhookScheme = "shopify"
	SchemeHMAC     WebhookScheme = "hmac"
)

// EnumValues implements Enum.
func (WebhookScheme) EnumValues() []string {
	return []string{"github", "stripe", "slack", "standard", "shopify", "hmac"}
}

// EnumNoun implements Enum.
func (WebhookScheme) EnumNoun() string { return "a webhook scheme" }

// ReplayKey is what identifies a delivery for the replay guard.
type ReplayKey string

// Replay keys.
const (
	ReplaySignature ReplayKey = "signature"
	ReplayID        ReplayKey = "id"
	ReplayOff       ReplayKey = "off"
)

// EnumValues implements Enum.
func (ReplayKey) EnumValues() []string { return []string{"signature", "id", "off"} }

// EnumNoun implements Enum.
func (ReplayKey) EnumNoun() string { return "a replay key" }

// WebhookSource is a sender of signed webhooks.
type WebhookSource struct {
	// Name is how routes refer to the source; also the default subject.
	Name string `yaml:"name"`
	// Scheme is the sender's signature scheme.
	Scheme WebhookScheme `yaml:"scheme"`
	// Secrets are the active signing secrets; several during rotation.
	Secrets []Secret `yaml:"secrets,omitempty"`
	// PublicKeys are Ed25519 keys (whpk_<base64>) for Standard Webhooks v1a.
	PublicKeys []string `yaml:"publicKeys,omitempty"`
	// Tolerance bounds the age (and future skew) of a signed timestamp.
	Tolerance Duration `yaml:"tolerance" default:"5m"`
	// MaxBodySize is the largest body verified; Envoy is told to buffer
	// this much (with_request_body.max_request_bytes).
	MaxBodySize ByteSize `yaml:"maxBodySize" default:"1MiB"`
	// Replay names what identifies a delivery already seen: its
	// signature (default), its id header, or off.
	Replay ReplayKey `yaml:"replay" default:"signature"`
	// ReplayWindow is how long a delivery is remembered; 0 means
	// Tolerance (schemes with timestamps) or 5m.
	ReplayWindow Duration `yaml:"replayWindow" default:"0s"`
	// ReplayFailureMode decides when the replay store cannot be reached.
	ReplayFailureMode FailureMode `yaml:"replayFailureMode" default:"closed"`
	// Subject is the identity of a verified delivery (default Name).
	Subject string `yaml:"subject,omitempty"`
	// Tier is the tier of a verified delivery (default: authz.defaultTier).
	Tier string `yaml:"tier,omitempty"`
	// HMAC configures the generic scheme.
	HMAC *GenericHMAC `yaml:"hmac,omitempty"`
}

// HMACAlgorithm is the hash of a generic HMAC signature.
type HMACAlgorithm string

// EnumValues implements Enum.
func (HMACAlgorithm) EnumValues() []string { return []string{"sha1", "sha256", "sha512"} }

// EnumNoun implements Enum.
func (HMACAlgorithm) EnumNoun() string { return "an HMAC algorithm" }

// SignatureEncoding is how a generic signature is written.
type SignatureEncoding string

// EnumValues implements Enum.
func (SignatureEncoding) EnumValues() []string { return []string{"hex", "base64", "base64url"} }

// EnumNoun implements Enum.
func (SignatureEncoding) EnumNoun() string { return "a signature encoding" }

// GenericHMAC is a configurable HMAC scheme for senders without a
// scheme of their own.
type GenericHMAC struct {
	// Header holds the signature.
	Header string `yaml:"header"`
	// Algorithm is the HMAC hash.
	Algorithm HMACAlgorithm `yaml:"algorithm" default:"sha256"`
	// Encoding is how the signature is written in the header.
	Encoding SignatureEncoding `yaml:"encoding" default:"hex"`
	// Prefix precedes the encoded signature in the header ("sha256=").
	Prefix string `yaml:"prefix,omitempty"`
	// TimestampHeader holds a unix timestamp (seconds) when set; it is
	// then checked against the tolerance.
	TimestampHeader string `yaml:"timestampHeader,omitempty"`
	// IDHeader holds a delivery id, for replay: id.
	IDHeader string `yaml:"idHeader,omitempty"`
	// Template is the signed content: {body}, {timestamp} and {id} are
	// replaced, the rest is literal.
	Template string `yaml:"template" default:"{body}"`
}

// RouteAuthz is a route's access policy: which credentials it accepts
// and what the authenticated caller must satisfy.
type RouteAuthz struct {
	// Public turns authz off for the route (Envoy skips ext_authz).
	Public bool `yaml:"public,omitempty"`
	// Mode combines the accepted methods: any (one suffices) or all.
	Mode MethodMode `yaml:"mode" default:"any"`
	// JWT accepts tokens of the named issuers (empty list: any issuer).
	JWT *RouteJWT `yaml:"jwt,omitempty"`
	// APIKey accepts API keys.
	APIKey *RouteAPIKey `yaml:"apiKey,omitempty"`
	// MTLS accepts client certificate identities.
	MTLS *RouteMTLS `yaml:"mtls,omitempty"`
	// Webhook names the webhook source whose signature the route needs.
	Webhook string `yaml:"webhook,omitempty"`
	// Optional lets a request with no credential at all through as
	// anonymous (tier "anonymous"); a bad credential is still refused.
	Optional bool `yaml:"optional,omitempty"`
	// Require is what the authenticated caller must satisfy.
	Require Requirements `yaml:"require,omitempty"`
	// DefaultTier is the tier when the credential names none.
	DefaultTier string `yaml:"defaultTier,omitempty"`
	// ClaimHeaders copy verified JWT claims to upstream headers
	// (overwriting client-sent copies).
	ClaimHeaders []ClaimHeader `yaml:"claimHeaders,omitempty"`
	// StripCredentials removes the credential headers (token and API key
	// headers) before the request goes upstream.
	StripCredentials bool `yaml:"stripCredentials,omitempty"`
	// Shadow computes and audits the decision but always allows, counting
	// a would-be denial as would_deny: for rolling out a policy safely.
	Shadow bool `yaml:"shadow,omitempty"`
}

// MethodMode combines a route's methods.
type MethodMode string

// Method modes.
const (
	ModeAny MethodMode = "any"
	ModeAll MethodMode = "all"
)

// EnumValues implements Enum.
func (MethodMode) EnumValues() []string { return []string{"any", "all"} }

// EnumNoun implements Enum.
func (MethodMode) EnumNoun() string { return "a method mode" }

// RouteJWT accepts JWTs.
type RouteJWT struct {
	// Issuers names the accepted issuers; empty accepts every issuer.
	Issuers []string `yaml:"issuers,omitempty"`
}

// RouteAPIKey accepts API keys.
type RouteAPIKey struct{}

// RouteMTLS accepts client certificate identities.
type RouteMTLS struct{}

// Requirements must all hold for an authenticated caller.
type Requirements struct {
	// Scopes must all be granted (JWT scope claim or API key scopes).
	Scopes []string `yaml:"scopes,omitempty"`
	// Claims must all match (JWT callers only).
	Claims []ClaimMatch `yaml:"claims,omitempty"`
	// SPIFFE restricts mTLS callers' SPIFFE ids.
	SPIFFE *SPIFFEMatch `yaml:"spiffe,omitempty"`
	// SourceCIDRs restrict the client address.
	SourceCIDRs []string `yaml:"sourceCIDRs,omitempty"`
}

// ClaimMatch is a condition on one claim; the claim name may be a dotted
// path into nested objects (realm_access.roles). Exactly one of Equals,
// OneOf, Contains and Regex is set.
type ClaimMatch struct {
	// Claim is the claim name or dotted path.
	Claim string `yaml:"claim"`
	// Equals is the exact value.
	Equals string `yaml:"equals,omitempty"`
	// OneOf lists the accepted values.
	OneOf []string `yaml:"oneOf,omitempty"`
	// Contains: an element of a list claim, or a word of a
	// space-separated string claim.
	Contains string `yaml:"contains,omitempty"`
	// Regex must match the whole value (or an element of a list).
	Regex string `yaml:"regex,omitempty"`
}

// SPIFFEMatch allows SPIFFE ids: any of IDs, or any id in TrustDomain whose
// path matches one of Paths (path.Match patterns: * is one segment).
type SPIFFEMatch struct {
	// IDs are allowed SPIFFE ids.
	IDs []string `yaml:"ids,omitempty"`
	// TrustDomain allows its ids (those matching Paths, when set).
	TrustDomain string `yaml:"trustDomain,omitempty"`
	// Paths are path patterns within TrustDomain.
	Paths []string `yaml:"paths,omitempty"`
}

// ClaimHeader copies a claim to an upstream header.
type ClaimHeader struct {
	// Claim is the claim name or dotted path.
	Claim string `yaml:"claim"`
	// Header is the upstream header it is copied to.
	Header string `yaml:"header"`
}

// TierPattern is what a tier may look like: it becomes a header value and
// a rate limit descriptor value.
var TierPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// headerNamePattern (lower-case header names) is declared in extproc.go.

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

func (a *Authz) validate(p Path, c *Config, errs *Errors) {
	if a.Realm == "" || strings.ContainsAny(a.Realm, "\"\\\r\n") {
		errs.Add(p.Field("realm"), "%q is not a realm; use a non-empty string without quotes or backslashes", a.Realm)
	}
	if !TierPattern.MatchString(a.DefaultTier) {
		errs.Add(p.Field("defaultTier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", a.DefaultTier)
	}
	for i, h := range a.Unmatched.Hosts {
		hp := p.Field("unmatched").Field("hosts").Index(i)
		if len(h.Hosts) == 0 {
			errs.Add(hp.Field("hosts"), "at least one host pattern is required")
		}
		for j, host := range h.Hosts {
			if msg := checkHostPattern(host); msg != "" {
				errs.Add(hp.Field("hosts").Index(j), "%q %s", host, msg)
			}
		}
		if h.Action == "" {
			errs.Add(hp.Field("action"), "is required; use allow|deny")
		}
	}
	if a.JWT != nil {
		a.JWT.validate(p.Field("jwt"), errs)
	}
	if a.APIKeys != nil {
		a.APIKeys.validate(p.Field("apiKeys"), errs)
	}
	if a.MTLS != nil {
		a.MTLS.validate(p.Field("mtls"), errs)
	}
	for i := range c.Routes {
		if c.Routes[i].Authz == nil && c.Routes[i].ID != "" {
			errs.Warn(Path("routes").Index(i), "route %q has no authz: section, so ext_authz denies all its requests; write authz: {public: true} to open it", c.Routes[i].ID)
		}
	}
	names := map[string]int{}
	for i := range a.Webhooks {
		w := &a.Webhooks[i]
		wp := p.Field("webhooks").Index(i)
		w.validate(wp, errs)
		if first, dup := names[w.Name]; dup && w.Name != "" {
			errs.Add(wp.Field("name"), "duplicate webhook source %q (also webhooks[%d])", w.Name, first)
		}
		names[w.Name] = i
	}
}

func (j *AuthzJWT) validate(p Path, errs *Errors) {
	if len(j.Issuers) == 0 {
		errs.Add(p.Field("issuers"), "at least one issuer is required")
	}
	names := map[string]int{}
	isss := map[string]int{}
	for i := range j.Issuers {
		is := &j.Issuers[i]
		ip := p.Field("issuers").Index(i)
		is.validate(ip, errs)
		if first, dup := names[is.Name]; dup && is.Name != "" {
			errs.Add(ip.Field("name"), "duplicate issuer name %q (also issuers[%d])", is.Name, first)
		}
		names[is.Name] = i
		if first, dup := isss[is.Issuer]; dup && is.Issuer != "" {
			errs.Add(ip.Field("issuer"), "issuer %q is configured twice (also issuers[%d]); a token's iss must name one issuer", is.Issuer, first)
		}
		isss[is.Issuer] = i
	}
	for i, s := range j.From {
		sp := p.Field("from").Index(i)
		switch {
		case (s.Header == "") == (s.Cookie == ""):
			errs.Add(sp, "set exactly one of header and cookie")
		case s.Header != "" && !headerNamePattern.MatchString(s.Header):
			errs.Add(sp.Field("header"), "%q is not a lower-case header name", s.Header)
		case s.Cookie != "" && s.Prefix != "":
			errs.Add(sp.Field("prefix"), "only applies to a header")
		case s.Cookie != "" && !httpToken.MatchString(s.Cookie):
			errs.Add(sp.Field("cookie"), "%q is not a cookie name", s.Cookie)
		}
	}
	if j.MaxTokenSize < 256 || j.MaxTokenSize > 1<<20 {
		errs.Add(p.Field("maxTokenSize"), "%s is out of range; use 256 to 1MiB", j.MaxTokenSize)
	}
	if j.CacheSize < 0 {
		errs.Add(p.Field("cacheSize"), "must be 0 (no cache) or more")
	}
}

func (is *JWTIssuer) validate(p Path, errs *Errors) {
	if !keyIDPattern.MatchString(is.Name) {
		errs.Add(p.Field("name"), "%q is not a name; use letters, digits, '.', '_', ':' or '-'", is.Name)
	}
	if is.Issuer == "" {
		errs.Add(p.Field("issuer"), "is required: the exact iss claim of the issuer's tokens")
	}
	if len(is.Algorithms) == 0 {
		errs.Add(p.Field("algorithms"), "at least one is required, e.g. [RS256]; use %s", strings.Join(JWTAlgorithm("").EnumValues(), "|"))
	}
	sources := 0
	if is.JWKSURL != "" {
		sources++
		if !strings.HasPrefix(is.JWKSURL, "https://") && !strings.HasPrefix(is.JWKSURL, "http://") {
			errs.Add(p.Field("jwksURL"), "%q is not an http(s) URL", is.JWKSURL)
		}
	}
	if is.Discovery {
		sources++
		if !strings.HasPrefix(is.Issuer, "https://") && !strings.HasPrefix(is.Issuer, "http://") {
			errs.Add(p.Field("discovery"), "needs an issuer that is an http(s) URL, got %q", is.Issuer)
		}
		if is.JWKSURL != "" {
			errs.Add(p.Field("discovery"), "set either jwksURL or discovery, not both")
		}
	}
	if is.JWKSFile != "" || is.JWKS != "" || len(is.PublicKeys) > 0 {
		sources++
	}
	if sources == 0 {
		errs.Add(p, "needs keys: set jwksURL, discovery, jwksFile, jwks or publicKeys")
	}
	for i, k := range is.PublicKeys {
		if !strings.Contains(k.PEM, "-----BEGIN") {
			errs.Add(p.Field("publicKeys").Index(i).Field("pem"), "is not a PEM block")
		}
	}
	if len(is.Audiences) == 0 {
		errs.Warn(p.Field("audiences"), "no audience: any token of this issuer is accepted whatever service it was issued for; list the audiences of this API")
	}
	if is.RefreshInterval.D() < time.Minute {
		errs.Add(p.Field("refreshInterval"), "%s is too short; use at least 1m", is.RefreshInterval)
	}
	if is.UnknownKidInterval.D() < time.Second {
		errs.Add(p.Field("unknownKidInterval"), "%s is too short; use at least 1s", is.UnknownKidInterval)
	}
	if is.FetchTimeout.D() < 100*time.Millisecond || is.FetchTimeout.D() > time.Minute {
		errs.Add(p.Field("fetchTimeout"), "%s is out of range; use 100ms to 1m", is.FetchTimeout)
	}
	if is.Leeway.D() > 5*time.Minute {
		errs.Add(p.Field("leeway"), "%s is too long; use at most 5m", is.Leeway)
	}
	if is.SubjectClaim == "" {
		errs.Add(p.Field("subjectClaim"), "is required")
	}
	for i, t := range is.Tiers {
		if !TierPattern.MatchString(t) {
			errs.Add(p.Field("tiers").Index(i), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", t)
		}
	}
	if len(is.Tiers) > 0 && is.TierClaim == "" {
		errs.Add(p.Field("tiers"), "only used with tierClaim")
	}
}

func (k *AuthzAPIKeys) validate(p Path, errs *Errors) {
	if !headerNamePattern.MatchString(k.Header) {
		errs.Add(p.Field("header"), "%q is not a lower-case header name", k.Header)
	}
	if len(k.Keys) == 0 && k.File == "" {
		errs.Add(p, "set keys or file")
	}
	ValidateAPIKeys(p.Field("keys"), k.Keys, errs)
}

// ValidateAPIKeys checks a list of API keys (from config or a key file).
func ValidateAPIKeys(p Path, keys []APIKey, errs *Errors) {
	ids := map[string]int{}
	hashes := map[string]int{}
	for i := range keys {
		key := &keys[i]
		kp := p.Index(i)
		if !keyIDPattern.MatchString(key.ID) {
			errs.Add(kp.Field("id"), "%q is not a key id; use letters, digits, '.', '_', ':' or '-'", key.ID)
		} else if first, dup := ids[key.ID]; dup {
			errs.Add(kp.Field("id"), "duplicate key id %q (also [%d])", key.ID, first)
		}
		ids[key.ID] = i
		if _, _, err := ParseKeyHash(key.Hash); err != "" {
			errs.Add(kp.Field("hash"), "%s", err)
		} else if first, dup := hashes[strings.ToLower(key.Hash)]; dup {
			errs.Add(kp.Field("hash"), "the same key hash as [%d]", first)
		}
		hashes[strings.ToLower(key.Hash)] = i
		if key.Subject == "" {
			errs.Add(kp.Field("subject"), "is required")
		}
		if key.Tier != "" && !TierPattern.MatchString(key.Tier) {
			errs.Add(kp.Field("tier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", key.Tier)
		}
		if key.ExpiresAt != "" {
			if _, err := time.Parse(time.RFC3339, key.ExpiresAt); err != nil {
				errs.Add(kp.Field("expiresAt"), "%q is not an RFC 3339 time such as 2027-01-31T00:00:00Z", key.ExpiresAt)
			}
		}
	}
}

// ParseKeyHash splits "sha256:<hex>" into its algorithm and digest, or
// says what is wrong with it.
func ParseKeyHash(s string) (alg string, digest []byte, problem string) {
	alg, hx, ok := strings.Cut(s, ":")
	if !ok {
		// Never echo the value: a key pasted here by mistake is a secret.
		return "", nil, "is not a key hash; write sha256:<64 hex digits> or sha512:<128 hex digits> (never the key itself)"
	}
	want := 0
	switch strings.ToLower(alg) {
	case "sha256":
		want = sha256.Size
	case "sha512":
		want = sha512.Size
	default:
		return "", nil, "unknown hash algorithm; use sha256 or sha512"
	}
	d, err := hex.DecodeString(hx)
	if err != nil || len(d) != want {
		return "", nil, "is not a key hash; write sha256:<64 hex digits> or sha512:<128 hex digits> (never the key itself)"
	}
	return strings.ToLower(alg), d, ""
}

func (m *AuthzMTLS) validate(p Path, errs *Errors) {
	tds := map[string]int{}
	for i, td := range m.TrustDomains {
		tp := p.Field("trustDomains").Index(i)
		if !validTrustDomain(td.Name) {
			errs.Add(tp.Field("name"), "%q is not a SPIFFE trust domain; use lower-case letters, digits, '.', '_' and '-'", td.Name)
		}
		if first, dup := tds[td.Name]; dup {
			errs.Add(tp.Field("name"), "duplicate trust domain %q (also trustDomains[%d])", td.Name, first)
		}
		tds[td.Name] = i
		if (td.BundleFile == "") == (td.Bundle == "") {
			errs.Add(tp, "set exactly one of bundleFile and bundle")
		}
	}
	if m.VerifyCertificate && len(m.TrustDomains) == 0 {
		errs.Add(p.Field("verifyCertificate"), "needs at least one of trustDomains to verify against")
	}
	if x := m.XFCC; x != nil {
		xp := p.Field("xfcc")
		if len(x.TrustedProxies) == 0 && len(x.TrustedProxyIDs) == 0 {
			errs.Add(xp, "name the hops allowed to send x-forwarded-client-cert in trustedProxies or trustedProxyIDs")
		}
		for i, c := range x.TrustedProxies {
			if _, err := netip.ParsePrefix(c); err != nil {
				errs.Add(xp.Field("trustedProxies").Index(i), "%q is not a CIDR such as 10.0.0.0/8", c)
			}
		}
		for i, id := range x.TrustedProxyIDs {
			if !validSPIFFEID(id) {
				errs.Add(xp.Field("trustedProxyIDs").Index(i), "%q is not a SPIFFE id (spiffe://trust.domain/path)", id)
			}
		}
		if x.Hop < 1 || x.Hop > 16 {
			errs.Add(xp.Field("hop"), "%d is out of range; use 1 (the last element) to 16", x.Hop)
		}
	}
	for i, t := range m.Tiers {
		tp := p.Field("tiers").Index(i)
		if !validSPIFFEPattern(t.ID) {
			errs.Add(tp.Field("id"), "%q is not a SPIFFE id or pattern (spiffe://trust.domain/path, * for one segment)", t.ID)
		}
		if !TierPattern.MatchString(t.Tier) {
			errs.Add(tp.Field("tier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", t.Tier)
		}
	}
}

var trustDomainPattern = regexp.MustCompile(`^[a-z0-9._-]{1,255}$`)

func validTrustDomain(s string) bool { return trustDomainPattern.MatchString(s) }

var spiffePathPattern = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)*$`)

func validSPIFFEID(s string) bool {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return false
	}
	td, p, _ := strings.Cut(rest, "/")
	if p != "" || strings.HasSuffix(rest, "/") {
		p = "/" + p
	}
	return validTrustDomain(td) && spiffePathPattern.MatchString(p) && p != "/"
}

func validSPIFFEPattern(s string) bool {
	if !strings.Contains(s, "*") {
		return validSPIFFEID(s)
	}
	if _, err := path.Match(s, ""); err != nil {
		return false
	}
	return validSPIFFEID(strings.ReplaceAll(s, "*", "x"))
}

func (w *WebhookSource) validate(p Path, errs *Errors) {
	if !keyIDPattern.MatchString(w.Name) {
		errs.Add(p.Field("name"), "%q is not a name; use letters, digits, '.', '_', ':' or '-'", w.Name)
	}
	if w.Scheme == "" {
		errs.Add(p.Field("scheme"), "is required; use %s", strings.Join(WebhookScheme("").EnumValues(), "|"))
	}
	if len(w.Secrets) == 0 && !(w.Scheme == SchemeStandard && len(w.PublicKeys) > 0) {
		errs.Add(p.Field("secrets"), "at least one secret reference (env:NAME or file:PATH) is required")
	}
	for i, s := range w.Secrets {
		if !s.IsSet() {
			errs.Add(p.Field("secrets").Index(i), "is empty")
		}
	}
	if len(w.PublicKeys) > 0 && w.Scheme != SchemeStandard {
		errs.Add(p.Field("publicKeys"), "only the standard scheme (v1a, Ed25519) uses public keys")
	}
	for i, k := range w.PublicKeys {
		if !strings.HasPrefix(k, "whpk_") {
			errs.Add(p.Field("publicKeys").Index(i), "is not a Standard Webhooks public key (whpk_<base64>)")
		}
	}
	if w.Tolerance.D() < time.Second || w.Tolerance.D() > 24*time.Hour {
		errs.Add(p.Field("tolerance"), "%s is out of range; use 1s to 24h", w.Tolerance)
	}
	if w.MaxBodySize < 1 || int64(w.MaxBodySize) > math.MaxUint32 {
		errs.Add(p.Field("maxBodySize"), "%s is out of range; use 1 byte to 4GiB", w.MaxBodySize)
	}
	if w.Replay == ReplayID && !slices.Contains([]WebhookScheme{SchemeStandard, SchemeGitHub, SchemeShopify, SchemeHMAC}, w.Scheme) {
		errs.Add(p.Field("replay"), "the %s scheme has no delivery id header; use signature", w.Scheme)
	}
	if w.Replay == ReplayID && w.Scheme == SchemeHMAC && (w.HMAC == nil || w.HMAC.IDHeader == "") {
		errs.Add(p.Field("replay"), "replay: id needs hmac.idHeader")
	}
	if w.Subject != "" && !keyIDPattern.MatchString(w.Subject) {
		errs.Add(p.Field("subject"), "%q is not a subject; use letters, digits, '.', '_', ':' or '-'", w.Subject)
	}
	if w.Tier != "" && !TierPattern.MatchString(w.Tier) {
		errs.Add(p.Field("tier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", w.Tier)
	}
	switch {
	case w.Scheme == SchemeHMAC && w.HMAC == nil:
		errs.Add(p.Field("hmac"), "the hmac scheme needs its settings: header, algorithm, encoding, template")
	case w.Scheme != SchemeHMAC && w.HMAC != nil:
		errs.Add(p.Field("hmac"), "only used with scheme: hmac")
	case w.HMAC != nil:
		h := w.HMAC
		hp := p.Field("hmac")
		if !headerNamePattern.MatchString(h.Header) {
			errs.Add(hp.Field("header"), "%q is not a lower-case header name", h.Header)
		}
		for _, f := range []struct {
			name, v string
		}{{"timestampHeader", h.TimestampHeader}, {"idHeader", h.IDHeader}} {
			if f.v != "" && !headerNamePattern.MatchString(f.v) {
				errs.Add(hp.Field(f.name), "%q is not a lower-case header name", f.v)
			}
		}
		if !strings.Contains(h.Template, "{body}") {
			errs.Add(hp.Field("template"), "%q does not sign the body; include {body}", h.Template)
		}
		if strings.Contains(h.Template, "{timestamp}") && h.TimestampHeader == "" {
			errs.Add(hp.Field("template"), "uses {timestamp} but timestampHeader is not set")
		}
		if strings.Contains(h.Template, "{id}") && h.IDHeader == "" {
			errs.Add(hp.Field("template"), "uses {id} but idHeader is not set")
		}
		if h.TimestampHeader != "" && !strings.Contains(h.Template, "{timestamp}") {
			errs.Add(hp.Field("template"), "does not sign {timestamp}, so the timestamp in timestampHeader could be changed by anyone")
		}
	}
}

// WebhookByName returns the webhook source named name, or nil.
func (a *Authz) WebhookByName(name string) *WebhookSource {
	for i := range a.Webhooks {
		if a.Webhooks[i].Name == name {
			return &a.Webhooks[i]
		}
	}
	return nil
}

func (a *RouteAuthz) validate(p Path, c *Config, errs *Errors) {
	if c.Authz == nil {
		if !a.Public {
			errs.Warn(p, "the config has no authz: section, so this policy is not enforced")
		}
		return
	}
	az := c.Authz
	methods := 0
	if a.JWT != nil {
		methods++
		if az.JWT == nil {
			errs.Add(p.Field("jwt"), "accepts JWTs but authz.jwt configures no issuer")
		} else {
			for i, n := range a.JWT.Issuers {
				if !slices.ContainsFunc(az.JWT.Issuers, func(is JWTIssuer) bool { return is.Name == n }) {
					errs.Add(p.Field("jwt").Field("issuers").Index(i), "unknown issuer %q; authz.jwt.issuers names %s", n, issuerNames(az.JWT.Issuers))
				}
			}
		}
	}
	if a.APIKey != nil {
		methods++
		if az.APIKeys == nil {
			errs.Add(p.Field("apiKey"), "accepts API keys but authz.apiKeys is not configured")
		}
	}
	if a.MTLS != nil {
		methods++
	}
	if a.Webhook != "" {
		methods++
		if az.WebhookByName(a.Webhook) == nil {
			errs.Add(p.Field("webhook"), "unknown webhook source %q", a.Webhook)
		}
	}
	if a.Public {
		if methods > 0 || a.Optional || a.Shadow || !a.Require.empty() || len(a.ClaimHeaders) > 0 || a.StripCredentials {
			errs.Add(p.Field("public"), "a public route takes no other authz settings")
		}
		return
	}
	if methods == 0 {
		errs.Add(p, "accepts no credential; set jwt, apiKey, mtls or webhook (or public: true)")
	}
	if a.Mode == ModeAll && a.Optional {
		errs.Add(p.Field("optional"), "cannot be combined with mode: all")
	}
	if a.Webhook != "" && a.Optional {
		errs.Add(p.Field("optional"), "a webhook route cannot accept unsigned requests")
	}
	if a.DefaultTier != "" && !TierPattern.MatchString(a.DefaultTier) {
		errs.Add(p.Field("defaultTier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", a.DefaultTier)
	}
	rp := p.Field("require")
	for i, m := range a.Require.Claims {
		mp := rp.Field("claims").Index(i)
		if m.Claim == "" {
			errs.Add(mp.Field("claim"), "is required")
		}
		n := 0
		for _, set := range []bool{m.Equals != "", len(m.OneOf) > 0, m.Contains != "", m.Regex != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs.Add(mp, "set exactly one of equals, oneOf, contains and regex")
		}
		if m.Regex != "" {
			if _, err := regexp.Compile(m.Regex); err != nil {
				errs.Add(mp.Field("regex"), "%q is not a valid RE2 expression", m.Regex)
			}
		}
	}
	if len(a.Require.Claims) > 0 && a.JWT == nil {
		errs.Add(rp.Field("claims"), "claims come from JWTs, but the route does not accept jwt")
	}
	if s := a.Require.SPIFFE; s != nil {
		sp := rp.Field("spiffe")
		if a.MTLS == nil {
			errs.Add(sp, "SPIFFE ids come from mTLS, but the route does not accept mtls")
		}
		if len(s.IDs) == 0 && s.TrustDomain == "" {
			errs.Add(sp, "set ids, or trustDomain (with optional paths)")
		}
		for i, id := range s.IDs {
			if !validSPIFFEID(id) {
				errs.Add(sp.Field("ids").Index(i), "%q is not a SPIFFE id (spiffe://trust.domain/path)", id)
			}
		}
		if s.TrustDomain != "" && !validTrustDomain(s.TrustDomain) {
			errs.Add(sp.Field("trustDomain"), "%q is not a SPIFFE trust domain", s.TrustDomain)
		}
		if len(s.Paths) > 0 && s.TrustDomain == "" {
			errs.Add(sp.Field("paths"), "only used with trustDomain")
		}
		for i, pat := range s.Paths {
			if _, err := path.Match(pat, ""); err != nil || !strings.HasPrefix(pat, "/") {
				errs.Add(sp.Field("paths").Index(i), "%q is not a path pattern such as /ns/prod/sa/*", pat)
			}
		}
	}
	for i, c := range a.Require.SourceCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs.Add(rp.Field("sourceCIDRs").Index(i), "%q is not a CIDR such as 10.0.0.0/8", c)
		}
	}
	headers := map[string]int{}
	for i, h := range a.ClaimHeaders {
		hp := p.Field("claimHeaders").Index(i)
		if h.Claim == "" {
			errs.Add(hp.Field("claim"), "is required")
		}
		switch {
		case !headerNamePattern.MatchString(h.Header):
			errs.Add(hp.Field("header"), "%q is not a lower-case header name", h.Header)
		case strings.HasPrefix(h.Header, ":") || h.Header == "host" || h.Header == "authorization" || h.Header == "cookie":
			errs.Add(hp.Field("header"), "%q cannot be set from a claim", h.Header)
		}
		if first, dup := headers[h.Header]; dup {
			errs.Add(hp.Field("header"), "duplicate header %q (also claimHeaders[%d])", h.Header, first)
		}
		headers[h.Header] = i
	}
	if len(a.ClaimHeaders) > 0 && a.JWT == nil {
		errs.Add(p.Field("claimHeaders"), "claims come from JWTs, but the route does not accept jwt")
	}
}

func (r Requirements) empty() bool {
	return len(r.Scopes) == 0 && len(r.Claims) == 0 && r.SPIFFE == nil && len(r.SourceCIDRs) == 0
}

func issuerNames(is []JWTIssuer) string {
	names := make([]string, len(is))
	for i := range is {
		names[i] = is[i].Name
	}
	return strings.Join(names, ", ")
}

// AuthzNeeds says how Envoy's ext_authz filter treats route r: off for
// public routes (and when authz is not configured), and with the raw body
// (whole, never truncated) for webhook routes, whose signature covers it.
// A route without an authz: section keeps ext_authz on: it is denied
// (fail closed) rather than silently public.
func (r *Route) AuthzNeeds(c *Config) AuthzNeeds {
	if c.Authz == nil || (r.Authz != nil && r.Authz.Public) {
		return AuthzNeeds{Disabled: true}
	}
	if r.Authz == nil || r.Authz.Webhook == "" {
		return AuthzNeeds{}
	}
	n := AuthzNeeds{RequestBody: true, MaxRequestBytes: 1 << 20}
	if w := c.Authz.WebhookByName(r.Authz.Webhook); w != nil && w.MaxBodySize > 0 && int64(w.MaxBodySize) <= math.MaxUint32 {
		n.MaxRequestBytes = uint32(w.MaxBodySize)
	}
	return n
}
