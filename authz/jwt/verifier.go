// Package jwt verifies JSON Web Tokens for gatehouse's ext_authz server:
// several issuers, each with its keys (JWKS URL, OIDC discovery, JWKS
// file, inline JWKS or PEM) and a strict algorithm allow-list; iss, aud,
// exp, nbf and iat checked with leeway; verified tokens cached by hash;
// concurrent verifications of the same uncached token coalesced.
//
// golang-jwt/jwt/v5 parses and verifies; MicahParks/keyfunc and jwkset
// keep the key sets.
package jwt

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	gjwt "github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Verified is a token whose signature and claims passed. It is shared by
// every Check presenting the same token and must not be modified.
type Verified struct {
	Identity core.Identity
	// IssuerName is the configured name of the issuer (routes refer to it).
	IssuerName string

	// keys and rev are the issuer's remote key set and its revision when
	// the verification began: once a fetch removes a key (the revision
	// moves), the cache no longer vouches for the token.
	keys *KeySet
	rev  uint64
}

// stale reports whether the key set moved on since vt was verified.
func (vt *Verified) stale() bool { return vt.keys != nil && vt.keys.rev.Load() != vt.rev }

// Verifier verifies tokens of the configured issuers.
type Verifier struct {
	issuers  map[string]*issuer // by iss
	byName   map[string]*issuer
	algs     map[string]bool // union of the issuers' allow-lists
	sources  []source
	maxSize  int
	cache    *cache
	cacheTTL time.Duration
	parser   *gjwt.Parser
	sf       singleflight.Group
	now      func() time.Time

	verifications atomic.Uint64
	coalesced     atomic.Uint64
	// waiting counts Checks inside the coalescing group (tests observe it).
	waiting atomic.Int64
}

type issuer struct {
	name      string
	iss       string
	algs      map[string]bool
	validator *gjwt.Validator
	// audRequired: the issuer has audiences, so a token must name one.
	audRequired bool
	static      *staticKeys
	keys        *KeySet // nil: static keys only
	kf          keyfunc.Keyfunc
	subject     string
	scope       string
	tierClaim   string
	tiers       []string
}

// Options build a Verifier.
type Options struct {
	// KeySets are reused when their issuer's remote settings did not
	// change (so a reload neither refetches nor drops cached keys); see
	// KeySetKey. Static keys are always read anew.
	KeySets map[string]*KeySet
	Client  *http.Client
	Logger  *slog.Logger
	// Audit records key set changes (nil: none).
	Audit audit.Recorder
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// New builds a Verifier. Key sets not found in opts.KeySets are created
// (not started); the caller starts and stops them (see KeySets).
func New(cfg *config.AuthzJWT, opts Options) (*Verifier, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		issuers:  map[string]*issuer{},
		byName:   map[string]*issuer{},
		algs:     map[string]bool{},
		sources:  newSources(cfg.From),
		maxSize:  int(cfg.MaxTokenSize),
		cache:    newCache(cfg.CacheSize),
		cacheTTL: cfg.CacheTTL.D(),
		now:      now,
		// Claims are validated per issuer below (each has its own leeway
		// and audiences); the parser only decodes and checks signatures.
		parser: gjwt.NewParser(gjwt.WithoutClaimsValidation()),
	}
	var errs config.Errors
	for i := range cfg.Issuers {
		ic := &cfg.Issuers[i]
		p := config.Path("authz.jwt.issuers").Index(i)
		algs := algSet(ic.Algorithms)
		static, err := loadStatic(ic, algs)
		if err != nil {
			var fe *config.FieldError
			if errors.As(err, &fe) {
				errs.Add(p+"."+fe.Path, "%s", fe.Msg)
			} else {
				errs.Add(p, "%v", err)
			}
			continue
		}
		var ks *KeySet
		if hasRemote(ic) {
			if ks = opts.KeySets[KeySetKey(ic)]; ks == nil {
				ks = NewKeySet(ic, opts)
			}
		}
		kf, err := keyfunc.New(keyfunc.Options{Storage: storage{static: static, ks: ks}})
		if err != nil {
			errs.Add(p, "%v", err)
			continue
		}
		vopts := []gjwt.ParserOption{
			gjwt.WithLeeway(ic.Leeway.D()),
			gjwt.WithIssuer(ic.Issuer),
			gjwt.WithIssuedAt(),
			gjwt.WithExpirationRequired(),
			gjwt.WithTimeFunc(now),
		}
		if len(ic.Audiences) > 0 {
			vopts = append(vopts, gjwt.WithAudience(ic.Audiences...))
		}
		is := &issuer{
			name:        ic.Name,
			iss:         ic.Issuer,
			algs:        algs,
			validator:   gjwt.NewValidator(vopts...),
			audRequired: len(ic.Audiences) > 0,
			static:      static,
			keys:        ks,
			kf:          kf,
			subject:     ic.SubjectClaim,
			scope:       ic.ScopeClaim,
			tierClaim:   ic.TierClaim,
			tiers:       ic.Tiers,
		}
		for a := range algs {
			v.algs[a] = true
		}
		v.issuers[ic.Issuer] = is
		v.byName[ic.Name] = is
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return v, nil
}

// KeySets returns the verifier's remote key sets by KeySetKey.
func (v *Verifier) KeySets() map[string]*KeySet {
	out := map[string]*KeySet{}
	for _, is := range v.byName {
		if is.keys != nil {
			out[is.keys.key] = is.keys
		}
	}
	return out
}

// Health reports every issuer's keys: static and remote.
func (v *Verifier) Health() []Health {
	out := make([]Health, 0, len(v.byName))
	for _, is := range v.byName {
		h := Health{Issuer: is.name, Loaded: true}
		if is.keys != nil {
			h = is.keys.Health()
		}
		h.Keys += is.static.n
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Health) int { return strings.Compare(a.Issuer, b.Issuer) })
	return out
}

// Stats are the verifier's counters.
type Stats struct {
	CacheHits, CacheMisses, Verifications, Coalesced uint64
	CacheEntries                                     int
}

// Stats returns the cache and verification counters.
func (v *Verifier) Stats() Stats {
	s := Stats{Verifications: v.verifications.Load(), Coalesced: v.coalesced.Load()}
	if v.cache != nil {
		s.CacheHits, s.CacheMisses, s.CacheEntries = v.cache.hits.Load(), v.cache.misses.Load(), v.cache.len()
	}
	return s
}

// Verify checks token and returns the verified token, or the reason it
// was refused. ex, when not nil, is told each step.
func (v *Verifier) Verify(ctx context.Context, token string, ex core.Explainer) (*Verified, core.Code) {
	if len(token) > v.maxSize {
		if ex != nil {
			ex.Step("token is %d bytes, more than maxTokenSize %d", len(token), v.maxSize)
		}
		return nil, core.TokenTooLarge
	}
	if token == "" {
		if ex != nil {
			ex.Step("token is empty")
		}
		return nil, core.TokenMalformed
	}
	// Hashed in place: a copy of a ~1 KiB token per Check is measurable.
	// The bytes are only read.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	if v.cache != nil {
		if vt := v.cache.get(&key, v.now().UnixNano()); vt != nil {
			if ex != nil {
				ex.Step("token found in the verified-token cache (issuer %s, subject %q, exp %s)", vt.IssuerName, vt.Identity.Subject, vt.Identity.Expires.UTC().Format(time.RFC3339))
			}
			return vt, core.OK
		}
	}
	if ex != nil {
		// Explanations are never shared with another caller's result.
		return v.verify(ctx, token, ex)
	}
	v.waiting.Add(1)
	defer v.waiting.Add(-1)
	return v.verifyOnce(ctx, &key, token)
}

type result struct {
	vt   *Verified
	code core.Code
}

// verifyOnce verifies token (hashed to key) once for all the Checks
// presenting it at the same time, and caches it. It looks in the cache
// again first: a Check that missed the cache just before another Check's
// verification of the same token finished would otherwise verify it a
// second time.
func (v *Verifier) verifyOnce(ctx context.Context, key *[32]byte, token string) (*Verified, core.Code) {
	r, _, shared := v.sf.Do(string(key[:]), func() (any, error) {
		if v.cache != nil {
			if vt := v.cache.peek(key, v.now().UnixNano()); vt != nil {
				return result{vt, core.OK}, nil
			}
		}
		// Not the first caller's context alone: the others wait on it.
		vt, code := v.verify(context.WithoutCancel(ctx), token, nil)
		if code == core.OK && v.cache != nil {
			now := v.now()
			until := now.Add(v.cacheTTL)
			if vt.Identity.Expires.Before(until) {
				until = vt.Identity.Expires
			}
			v.cache.put(key, vt, until.UnixNano(), now.UnixNano())
		}
		return result{vt, code}, nil
	})
	if shared {
		v.coalesced.Add(1)
	}
	res := r.(result)
	return res.vt, res.code
}

var (
	errIssuerUnknown = errors.New("jwt: unknown issuer")
	errAlgNotAllowed = errors.New("jwt: algorithm not allowed for the issuer")
)

func (v *Verifier) verify(ctx context.Context, token string, ex core.Explainer) (*Verified, core.Code) {
	v.verifications.Add(1)
	h, err := ParseHeader(token)
	if err != nil {
		if ex != nil {
			ex.Step("token is malformed: %v", err)
		}
		return nil, core.TokenMalformed
	}
	if !v.algs[h.Alg] {
		if ex != nil {
			ex.Step("alg %q is in no issuer's allow-list", h.Alg)
		}
		return nil, core.TokenAlgNotAllowed
	}
	var is *issuer
	var rev uint64
	claims := gjwt.MapClaims{}
	_, err = v.parser.ParseWithClaims(token, claims, func(t *gjwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		if is = v.issuers[iss]; is == nil {
			return nil, errIssuerUnknown
		}
		if !is.algs[t.Method.Alg()] {
			return nil, errAlgNotAllowed
		}
		if is.keys != nil {
			// Before the key is read: see Verified.stale.
			rev = is.keys.rev.Load()
		}
		return is.kf.KeyfuncCtx(ctx)(t)
	})
	if err != nil {
		code := parseErrorCode(err)
		if ex != nil {
			ex.Step("token refused: %s (%v)", code, err)
		}
		return nil, code
	}
	if ex != nil {
		ex.Step("signature verified with a key of issuer %s (alg %s, kid %q)", is.name, h.Alg, h.Kid)
	}
	if err := is.validator.Validate(claims); err != nil {
		code := claimsErrorCode(err)
		if code == core.TokenClaimsInvalid && is.audRequired && audienceAbsent(claims) {
			// golang-jwt reports a missing aud as a missing required
			// claim, like a missing exp; a token that names none of the
			// issuer's audiences is an audience mismatch however it
			// does so.
			code = core.TokenAudienceMismatch
		}
		if ex != nil {
			ex.Step("claims refused: %s (%v)", code, err)
		}
		return nil, code
	}
	sub, ok := claims[is.subject].(string)
	if !ok || sub == "" || !contract.HeaderSafe(sub) {
		if ex != nil {
			ex.Step("claim %q is missing, not a string, or not safe in a header", is.subject)
		}
		return nil, core.TokenClaimsInvalid
	}
	exp, _ := claims.GetExpirationTime() // required by the validator
	vt := &Verified{IssuerName: is.name, keys: is.keys, rev: rev, Identity: core.Identity{
		Method:  contract.AuthMethodJWT,
		Subject: sub,
		Issuer:  is.iss,
		Scopes:  scopes(claims, is.scope),
		Claims:  claims,
		KeyID:   h.Kid,
		Expires: exp.Time,
	}}
	if is.tierClaim != "" {
		t, _ := claims[is.tierClaim].(string)
		switch {
		case t == "":
		case !config.TierPattern.MatchString(t) || (len(is.tiers) > 0 && !slices.Contains(is.tiers, t)):
			if ex != nil {
				ex.Step("tier claim %q holds a value not accepted as a tier; the route default applies", is.tierClaim)
			}
		default:
			vt.Identity.Tier = t
		}
	}
	if ex != nil {
		ex.Step("claims valid: iss %q, sub %q, exp %s, scopes %v", is.iss, sub, exp.UTC().Format(time.RFC3339), vt.Identity.Scopes)
	}
	return vt, core.OK
}

func parseErrorCode(err error) core.Code {
	switch {
	case errors.Is(err, errIssuerUnknown):
		return core.TokenIssuerUnknown
	case errors.Is(err, errAlgNotAllowed):
		return core.TokenAlgNotAllowed
	case errors.Is(err, errNotLoaded):
		return core.JWKSUnavailable
	case errors.Is(err, jwkset.ErrKeyNotFound):
		return core.TokenUnknownKID
	case errors.Is(err, gjwt.ErrTokenMalformed):
		return core.TokenMalformed
	}
	// A bad signature, a key of the wrong type for the alg (key
	// confusion) or a JWK whose alg is not the token's.
	return core.TokenSignatureInvalid
}

// audienceAbsent reports whether aud is missing or empty ("", [] or
// [""]). An aud of the wrong type (a number, say) is not absent but
// malformed, though golang-jwt reads it as missing.
func audienceAbsent(c gjwt.MapClaims) bool {
	switch v := c["aud"].(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0 || len(v) == 1 && v[0] == ""
	}
	return false
}

func claimsErrorCode(err error) core.Code {
	switch {
	case errors.Is(err, gjwt.ErrTokenExpired):
		return core.TokenExpired
	case errors.Is(err, gjwt.ErrTokenNotValidYet), errors.Is(err, gjwt.ErrTokenUsedBeforeIssued):
		return core.TokenNotYetValid
	case errors.Is(err, gjwt.ErrTokenInvalidAudience):
		return core.TokenAudienceMismatch
	case errors.Is(err, gjwt.ErrTokenInvalidIssuer):
		return core.TokenIssuerUnknown
	}
	return core.TokenClaimsInvalid
}

// scopes reads a space-separated string or a list of strings from claim
// (or, when it is absent, from scp, which some issuers use).
func scopes(c gjwt.MapClaims, claim string) []string {
	raw, ok := c[claim]
	if !ok {
		raw = c["scp"]
	}
	switch s := raw.(type) {
	case string:
		return strings.Fields(s)
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			if str, ok := e.(string); ok && str != "" {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}
