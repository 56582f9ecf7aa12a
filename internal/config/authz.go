package config

import (
	"math"
	"regexp"
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
	// AllowLoopbackHTTPJWKS lets the discovery document of an https
	// issuer name a plain http:// jwks_uri on this host (localhost,
	// 127.0.0.0/8, ::1), such as a local key cache. Any other http://
	// jwks_uri of an https issuer is refused: keys fetched in the clear
	// could be swapped by anyone on the path.
	AllowLoopbackHTTPJWKS bool `yaml:"allowLoopbackHTTPJWKS,omitempty"`
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
	// MaxJWKSSize refuses a JWKS response larger than this (the fetch
	// fails and the last good keys keep serving).
	MaxJWKSSize ByteSize `yaml:"maxJWKSSize" default:"1MiB"`
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
	ExpiresAt Time `yaml:"expiresAt,omitempty"`
	// Revoked refuses the key with its own reason code.
	Revoked bool `yaml:"revoked,omitempty"`
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
	SchemeTwilio   WebhookScheme = "twilio"
	SchemeSvix     WebhookScheme = "svix"
	SchemeGitLab   WebhookScheme = "gitlab"
)

// EnumValues implements Enum.
func (WebhookScheme) EnumValues() []string {
	return []string{"github", "stripe", "slack", "standard", "shopify", "hmac", "twilio", "svix", "gitlab"}
}

// EnumNoun implements Enum.
func (WebhookScheme) EnumNoun() string { return "a webhook scheme" }

// ReplayKey is what identifies a delivery for the replay guard.
type ReplayKey string

// Replay keys.
const (
	// ReplayAuto is the scheme's own choice: off for twilio and gitlab,
	// signature for the others (see WebhookSource.ReplayKey).
	ReplayAuto      ReplayKey = "auto"
	ReplaySignature ReplayKey = "signature"
	ReplayID        ReplayKey = "id"
	ReplayOff       ReplayKey = "off"
)

// EnumValues implements Enum.
func (ReplayKey) EnumValues() []string { return []string{"auto", "signature", "id", "off"} }

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
	// signed content (signature), its id header (id; only where the
	// scheme signs the id: standard, svix, or hmac with {id} in the
	// template), or off. auto, the default, is signature, except off for
	// twilio (it signs no timestamp or id, and identical deliveries are
	// legitimate) and gitlab (a static token, not a signature).
	Replay ReplayKey `yaml:"replay" default:"auto"`
	// ReplayWindow is how long a delivery is remembered; 0 means twice
	// Tolerance (a signed timestamp may be that far off either way), for
	// schemes that sign no timestamp too.
	ReplayWindow Duration `yaml:"replayWindow" default:"0s"`
	// ReplayFailureMode decides when the replay store cannot be reached.
	ReplayFailureMode FailureMode `yaml:"replayFailureMode" default:"closed"`
	// Subject is the identity of a verified delivery (default Name).
	Subject string `yaml:"subject,omitempty"`
	// Tier is the tier of a verified delivery (default: authz.defaultTier).
	Tier string `yaml:"tier,omitempty"`
	// HMAC configures the generic scheme.
	HMAC *GenericHMAC `yaml:"hmac,omitempty"`
	// Twilio configures the twilio scheme.
	Twilio *TwilioWebhook `yaml:"twilio,omitempty"`
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
	// Prefix precedes the encoded signature in the header ("sha256="),
	// in each element of the list when Separator is set.
	Prefix string `yaml:"prefix,omitempty"`
	// Separator, when set, makes the header a list of signatures (one per
	// active secret during a rotation), split at each occurrence of it;
	// spaces around an element are ignored, as are elements that lack
	// Prefix, and one verifying element suffices. Empty: the header holds
	// exactly one signature.
	Separator string `yaml:"separator,omitempty"`
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
	// MTLS accepts client certificate identities; what it verifies and
	// believes is authz.mtls's unless it says otherwise.
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
	// FailureMode overrides xds.services.authzFailureMode for the route:
	// what Envoy does when ext_authz cannot answer. open lets the request
	// through as anonymous (client-sent identity headers removed, rate
	// limited as the anonymous tier); closed refuses it (403).
	FailureMode FailureMode `yaml:"failureMode,omitempty"`
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

// Requirements must all hold for an authenticated caller.
type Requirements struct {
	// Scopes must all be granted (JWT scope claim or API key scopes).
	Scopes []string `yaml:"scopes,omitempty"`
	// Claims must all match (JWT callers only).
	Claims []ClaimMatch `yaml:"claims,omitempty"`
	// SPIFFE restricts mTLS callers' SPIFFE ids.
	SPIFFE *SPIFFEMatch `yaml:"spiffe,omitempty"`
	// SourceCIDRs restrict the client address.
	SourceCIDRs []CIDR `yaml:"sourceCIDRs,omitempty"`
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
	Regex Regex `yaml:"regex,omitempty"`
}

// SPIFFEMatch allows SPIFFE ids: any of IDs, or any id in TrustDomain whose
// path matches one of Paths (path.Match patterns: * is one segment).
type SPIFFEMatch struct {
	// IDs are allowed SPIFFE ids.
	IDs []SPIFFEID `yaml:"ids,omitempty"`
	// TrustDomain allows its ids (those matching Paths, when set).
	TrustDomain SPIFFETrustDomain `yaml:"trustDomain,omitempty"`
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

// AuthzNeeds says how Envoy's ext_authz filter treats route r: off for
// public routes (and when authz is not configured), and with the raw body
// (whole, never truncated) for webhook routes whose signature covers it
// (every scheme but gitlab, whose token covers nothing).
// A route without an authz: section keeps ext_authz on: it is denied
// (fail closed) rather than silently public.
func (r *Route) AuthzNeeds(c *Config) AuthzNeeds {
	if c.Authz == nil || (r.Authz != nil && r.Authz.Public) {
		return AuthzNeeds{Disabled: true}
	}
	mode := FailClosed
	if c.XDS != nil {
		mode = c.XDS.Services.AuthzFailureMode
	}
	if r.Authz != nil && r.Authz.FailureMode != "" {
		mode = r.Authz.FailureMode
	}
	if r.Authz == nil || r.Authz.Webhook == "" {
		return AuthzNeeds{FailureMode: mode}
	}
	w := c.Authz.WebhookByName(r.Authz.Webhook)
	if w != nil && !w.Scheme.SignsBody() {
		return AuthzNeeds{FailureMode: mode}
	}
	size := Defaults[WebhookSource]().MaxBodySize
	if w != nil && w.MaxBodySize > 0 && int64(w.MaxBodySize) <= math.MaxUint32 {
		size = w.MaxBodySize
	}
	return AuthzNeeds{RequestBody: true, MaxRequestBytes: uint32(size), FailureMode: mode}
}
