package config

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"math"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/contract"
)

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

// Bounds of an issuer's maxJWKSSize: a JWKS of one RSA key is about half
// a KiB, and 16MiB holds thousands of keys.
const (
	minJWKSSize ByteSize = 1 << 10
	maxJWKSSize ByteSize = 16 << 20
)

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
	if is.AllowLoopbackHTTPJWKS && !is.Discovery {
		errs.Add(p.Field("allowLoopbackHTTPJWKS"), "only used with discovery: true (a jwksURL is fetched as written)")
	}
	if is.JWKSURL != "" && !LoopbackHTTP(is.JWKSURL) && strings.HasPrefix(is.JWKSURL, "http://") {
		errs.Warn(p.Field("jwksURL"), "%q is fetched over plain HTTP: anyone on the path can replace the keys and mint tokens; use https", is.JWKSURL)
	}
	if is.Discovery && !LoopbackHTTP(is.Issuer) && strings.HasPrefix(is.Issuer, "http://") {
		errs.Warn(p.Field("discovery"), "the discovery document of %q is fetched over plain HTTP: anyone on the path can replace the keys and mint tokens; use https", is.Issuer)
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
	if is.MaxJWKSSize < minJWKSSize || is.MaxJWKSSize > maxJWKSSize {
		errs.Add(p.Field("maxJWKSSize"), "%s is out of range; use %s to %s", is.MaxJWKSSize, minJWKSSize, maxJWKSSize)
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
		} else if !contract.HeaderSafe(key.Subject) {
			errs.Add(kp.Field("subject"), "must be printable ASCII of at most 1KiB: it is sent upstream in x-gatehouse-subject")
		}
		for j, sc := range key.Scopes {
			if sc == "" || strings.ContainsRune(sc, ' ') || !contract.HeaderSafe(sc) {
				errs.Add(kp.Field("scopes").Index(j), "must be printable ASCII without spaces: scopes are sent upstream space-separated in x-gatehouse-scopes")
			}
		}
		if key.Tier != "" && !TierPattern.MatchString(key.Tier) {
			errs.Add(kp.Field("tier"), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", key.Tier)
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
	// replay: id is sound only where the id is signed: otherwise a
	// captured delivery resent under a fresh id passes the guard.
	switch {
	case w.Replay != ReplayID || w.Scheme == SchemeStandard || w.Scheme == SchemeSvix || w.Scheme == SchemeGitLab:
		// (gitlab refuses every guard: validateProvider)
	case w.Scheme == SchemeGitHub || w.Scheme == SchemeShopify || w.Scheme == SchemeTwilio:
		errs.Add(p.Field("replay"), "the %s scheme does not sign its delivery id, so a captured delivery resent under a fresh id would pass; use signature", w.Scheme)
	case w.Scheme != SchemeHMAC:
		errs.Add(p.Field("replay"), "the %s scheme has no delivery id header; use signature", w.Scheme)
	case w.HMAC == nil || w.HMAC.IDHeader == "":
		errs.Add(p.Field("replay"), "replay: id needs hmac.idHeader")
	case !strings.Contains(w.HMAC.Template, "{id}"):
		errs.Add(p.Field("replay"), "hmac.template does not sign {id}, so a captured delivery resent under a fresh id would pass; add {id} to the template or use signature")
	}
	w.validateProvider(p, errs)
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

func issuerNames(is []JWTIssuer) string {
	names := make([]string, len(is))
	for i := range is {
		names[i] = is[i].Name
	}
	return strings.Join(names, ", ")
}

// LoopbackHTTP reports whether u is an http:// URL of this host (a local
// identity provider in development), where plain HTTP does not travel.
// It is strict: a host that is not plainly localhost or a loopback
// address (user info, a longer name) is not loopback.
func LoopbackHTTP(u string) bool {
	rest, ok := strings.CutPrefix(u, "http://")
	if !ok {
		return false
	}
	host, _, _ := strings.Cut(rest, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
