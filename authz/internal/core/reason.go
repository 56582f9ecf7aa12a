// Package core holds what the authz server and its verifiers (jwt, mtls,
// apikey, webhook) share: the closed set of reason codes every decision
// ends in, the caller's identity, and the request as Envoy described it.
package core

// Code is a decision's reason. The set is closed: each code maps to one
// HTTP status, one WWW-Authenticate error (RFC 6750), one public reason in
// the deny body, one metric label and one audit reason. docs/authz.md
// lists them; a test keeps that table and this one in step.
type Code uint8

// Reason codes. Allow codes come first; CodeCount is the number of codes.
const (
	// OK: authenticated and every requirement met.
	OK Code = iota
	// Public: the route is public (reached when Envoy sent no route id).
	Public
	// Anonymous: an optional-auth route and no credential at all.
	Anonymous
	// UnmatchedAllowed: no route matched and the host allows unmatched.
	UnmatchedAllowed

	NoRoute
	NoPolicy
	RequestMalformed
	CredentialsMissing
	CredentialsAmbiguous
	TokenMalformed
	TokenTooLarge
	TokenAlgNotAllowed
	TokenUnknownKID
	TokenSignatureInvalid
	TokenIssuerUnknown
	TokenIssuerNotAllowed
	TokenAudienceMismatch
	TokenExpired
	TokenNotYetValid
	TokenClaimsInvalid
	JWKSUnavailable
	APIKeyUnknown
	APIKeyExpired
	APIKeyRevoked
	MTLSMissing
	MTLSInvalid
	MTLSUntrusted
	WebhookSignatureMissing
	WebhookSignatureMalformed
	WebhookSignatureInvalid
	WebhookTimestampStale
	WebhookReplayed
	WebhookBodyMissing
	WebhookBodyTooLarge
	ReplayStoreUnavailable
	ScopeMissing
	ClaimMismatch
	SPIFFENotAllowed
	SourceNotAllowed
	InternalError

	// CodeCount is the number of codes, for tables indexed by Code.
	CodeCount
)

// Info is what a code maps to.
type Info struct {
	// Name is the metric label and audit reason.
	Name string
	// Status is the HTTP status of a denial (0 for allow codes).
	Status int
	// BearerError is the RFC 6750 error code for the Bearer challenge of a
	// 401 or 403 ("" = none, e.g. when no credential was sent at all).
	BearerError string
	// Public is the reason given to the client in the deny body: coarser
	// than Name where the exact cause would help an attacker (an unknown
	// key and a revoked one look the same from outside).
	Public string
}

var infos = [CodeCount]Info{
	OK:                        {"allowed", 0, "", ""},
	Public:                    {"public", 0, "", ""},
	Anonymous:                 {"anonymous", 0, "", ""},
	UnmatchedAllowed:          {"unmatched_allowed", 0, "", ""},
	NoRoute:                   {"no_route", 403, "", "no_route"},
	NoPolicy:                  {"no_policy", 403, "", "forbidden"},
	RequestMalformed:          {"request_malformed", 400, "invalid_request", "bad_request"},
	CredentialsMissing:        {"credentials_missing", 401, "", "credentials_missing"},
	CredentialsAmbiguous:      {"credentials_ambiguous", 400, "invalid_request", "credentials_ambiguous"},
	TokenMalformed:            {"token_malformed", 401, "invalid_token", "invalid_token"},
	TokenTooLarge:             {"token_too_large", 401, "invalid_token", "invalid_token"},
	TokenAlgNotAllowed:        {"token_alg_not_allowed", 401, "invalid_token", "invalid_token"},
	TokenUnknownKID:           {"token_unknown_kid", 401, "invalid_token", "invalid_token"},
	TokenSignatureInvalid:     {"token_signature_invalid", 401, "invalid_token", "invalid_token"},
	TokenIssuerUnknown:        {"token_issuer_unknown", 401, "invalid_token", "invalid_token"},
	TokenIssuerNotAllowed:     {"token_issuer_not_allowed", 401, "invalid_token", "invalid_token"},
	TokenAudienceMismatch:     {"token_audience_mismatch", 401, "invalid_token", "invalid_token"},
	TokenExpired:              {"token_expired", 401, "invalid_token", "token_expired"},
	TokenNotYetValid:          {"token_not_yet_valid", 401, "invalid_token", "invalid_token"},
	TokenClaimsInvalid:        {"token_claims_invalid", 401, "invalid_token", "invalid_token"},
	JWKSUnavailable:           {"jwks_unavailable", 503, "", "temporarily_unavailable"},
	APIKeyUnknown:             {"apikey_unknown", 401, "", "invalid_api_key"},
	APIKeyExpired:             {"apikey_expired", 401, "", "api_key_expired"},
	APIKeyRevoked:             {"apikey_revoked", 401, "", "invalid_api_key"},
	MTLSMissing:               {"mtls_missing", 403, "", "client_certificate_required"},
	MTLSInvalid:               {"mtls_invalid", 403, "", "invalid_client_certificate"},
	MTLSUntrusted:             {"mtls_untrusted", 403, "", "invalid_client_certificate"},
	WebhookSignatureMissing:   {"webhook_signature_missing", 401, "", "invalid_signature"},
	WebhookSignatureMalformed: {"webhook_signature_malformed", 401, "", "invalid_signature"},
	WebhookSignatureInvalid:   {"webhook_signature_invalid", 401, "", "invalid_signature"},
	WebhookTimestampStale:     {"webhook_timestamp_stale", 401, "", "timestamp_out_of_tolerance"},
	WebhookReplayed:           {"webhook_replayed", 409, "", "replayed"},
	WebhookBodyMissing:        {"webhook_body_missing", 400, "", "body_required"},
	WebhookBodyTooLarge:       {"webhook_body_too_large", 413, "", "body_too_large"},
	ReplayStoreUnavailable:    {"replay_store_unavailable", 503, "", "temporarily_unavailable"},
	ScopeMissing:              {"scope_missing", 403, "insufficient_scope", "insufficient_scope"},
	ClaimMismatch:             {"claim_mismatch", 403, "", "forbidden"},
	SPIFFENotAllowed:          {"spiffe_not_allowed", 403, "", "forbidden"},
	SourceNotAllowed:          {"source_not_allowed", 403, "", "forbidden"},
	InternalError:             {"internal_error", 500, "", "internal_error"},
}

// Info returns what c maps to.
func (c Code) Info() Info {
	if c >= CodeCount {
		return infos[InternalError]
	}
	return infos[c]
}

// String is the code's name: the metric label and the audit reason.
func (c Code) String() string { return c.Info().Name }

// Allowed reports whether c is an allow code.
func (c Code) Allowed() bool { return c <= UnmatchedAllowed }

// Codes lists every code, in order.
func Codes() []Code {
	out := make([]Code, CodeCount)
	for i := range out {
		out[i] = Code(i)
	}
	return out
}
