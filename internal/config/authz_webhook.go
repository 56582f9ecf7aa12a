package config

import (
	"net/url"
	"strings"
)

// TwilioWebhook configures the twilio scheme.
type TwilioWebhook struct {
	// PublicBaseURL is the scheme, host (and port) and optional path
	// prefix that Twilio calls, for deployments where Envoy does not see
	// the URL Twilio signed: behind a TLS-terminating load balancer (Envoy
	// sees http), a proxy that rewrites the host, or one that strips a
	// path prefix. The signed URL is then PublicBaseURL (without a
	// trailing slash) followed by the path and query Envoy saw. Empty: the
	// URL is the scheme, :authority, path and query as Envoy saw them.
	PublicBaseURL string `yaml:"publicBaseURL,omitempty"`
}

// SignsBody reports whether the scheme's signature covers the request
// body, so that Envoy must send it to ext_authz. GitLab's token is the
// shared secret itself and covers nothing of the request.
func (s WebhookScheme) SignsBody() bool { return s != SchemeGitLab }

// ReplayKey resolves auto to what the scheme can guard soundly: off for
// twilio (it signs no timestamp or delivery id, and two identical
// requests are legitimate: a <Gather> answered the same way twice in one
// call, a <Redirect> loop) and gitlab (whoever saw one delivery holds the
// static token and can send any body, so no guard can hold), signature
// for every other scheme.
func (w *WebhookSource) ReplayKey() ReplayKey {
	if w.Replay != ReplayAuto && w.Replay != "" {
		return w.Replay
	}
	switch w.Scheme {
	case SchemeTwilio, SchemeGitLab:
		return ReplayOff
	}
	return ReplaySignature
}

// validateProvider checks what the twilio, svix and gitlab schemes and
// the generic scheme's signature list add to a webhook source.
func (w *WebhookSource) validateProvider(p Path, errs *Errors) {
	if w.Scheme == SchemeGitLab && (w.Replay == ReplaySignature || w.Replay == ReplayID) {
		errs.Add(p.Field("replay"), "the gitlab token is a static secret that signs nothing (not the body, not X-Gitlab-Event-UUID or Idempotency-Key): whoever saw one delivery can send any body under any id, so no replay guard can hold; use off (de-duplicate GitLab's retries by their Idempotency-Key with extproc idempotency instead)")
	}
	switch {
	case w.Scheme != SchemeTwilio && w.Twilio != nil:
		errs.Add(p.Field("twilio"), "only used with scheme: twilio")
	case w.Twilio != nil && w.Twilio.PublicBaseURL != "":
		if msg := checkPublicBaseURL(w.Twilio.PublicBaseURL); msg != "" {
			errs.Add(p.Field("twilio").Field("publicBaseURL"), "%q %s", w.Twilio.PublicBaseURL, msg)
		}
	}
	if h := w.HMAC; h != nil && h.Separator != "" {
		if msg := checkSeparator(h.Separator, h.Prefix, h.Encoding); msg != "" {
			errs.Add(p.Field("hmac").Field("separator"), "%q %s", h.Separator, msg)
		}
	}
}

// checkPublicBaseURL says what is wrong with a Twilio public base URL,
// or "" when it is one.
func checkPublicBaseURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "":
		return "is not an absolute http(s) URL such as https://hooks.example.com or https://hooks.example.com/twilio"
	case u.User != nil:
		return "holds user information; Twilio's basic auth credentials are not part of the signed URL, so write the URL without them"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(s, "?#"):
		return "has a query or fragment; the query comes from the request, so write only scheme, host and path prefix"
	}
	return ""
}

// encodingAlphabet lists the characters a signature of each encoding is
// written with, padding included.
var encodingAlphabet = map[SignatureEncoding]string{
	"hex":       "0123456789abcdefABCDEF",
	"base64":    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
	"base64url": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=",
}

// checkSeparator says why sep cannot split a list of prefix+signature
// elements unambiguously, or "" when it can.
func checkSeparator(sep, prefix string, enc SignatureEncoding) string {
	if len(sep) > 4 {
		return "is too long; use 1 to 4 characters, such as \" \" or \",\""
	}
	for i := 0; i < len(sep); i++ {
		if sep[i] < 0x20 || sep[i] > 0x7e {
			return "must be printable ASCII, such as \" \" or \",\""
		}
	}
	if strings.ContainsAny(sep, encodingAlphabet[enc]) {
		return "holds a character a " + string(enc) + " signature is written with, so it would split signatures; use \" \" or \",\""
	}
	if prefix != "" && strings.Contains(prefix, sep) {
		return "occurs in the prefix, so it would split the prefix; use another separator"
	}
	return ""
}
