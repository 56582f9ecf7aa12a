// Package webhook verifies signed webhooks over the exact raw body Envoy
// forwards (with_request_body + pack_as_bytes): GitHub, Stripe, Slack,
// Standard Webhooks (HMAC v1 and Ed25519 v1a) and Svix, its origin,
// Shopify, Twilio (the URL Envoy saw and the form parameters or the body
// hash) and a configurable generic HMAC scheme; and GitLab's static
// token, which signs nothing. Each source has several active secrets
// (rotation), a timestamp tolerance, a body size limit and a replay guard
// kept in the shared key/value store (Redis when configured), so that a
// delivery seen by one replica is refused by every other. Comparisons are
// constant-time.
package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/kv"
)

// Verifier checks the deliveries of one webhook source.
type Verifier struct {
	name      string
	scheme    config.WebhookScheme
	keys      [][]byte // HMAC keys, as the scheme derives them from secrets
	pubKeys   []ed25519.PublicKey
	tokens    [][]byte // SHA-256 of GitLab tokens: compared digest to digest
	signsBody bool
	baseURL   string // Twilio's public base URL ("" = as Envoy saw it)
	tolerance time.Duration
	maxBody   int
	replay    config.ReplayKey
	window    time.Duration
	failOpen  bool
	subject   string
	tier      string
	generic   *config.GenericHMAC
	newHash   func() hash.Hash
	store     kv.Store
	now       func() time.Time

	storeErrors atomic.Uint64
}

// Options are what a Verifier needs besides its config.
type Options struct {
	// Store keeps the replay guard; nil turns replay protection off.
	Store kv.Store
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AllowUnresolved skips secrets that were not resolved (a config
	// checked with validate --skip-secrets); such a verifier refuses all.
	AllowUnresolved bool
}

// New builds the verifier of source w. Secrets must be resolved.
func New(w *config.WebhookSource, opts Options) (*Verifier, error) {
	v := &Verifier{
		name:      w.Name,
		scheme:    w.Scheme,
		tolerance: w.Tolerance.D(),
		maxBody:   int(w.MaxBodySize),
		replay:    w.ReplayKey(),
		window:    w.ReplayWindow.D(),
		failOpen:  w.ReplayFailureMode == config.FailOpen,
		subject:   w.Subject,
		tier:      w.Tier,
		generic:   w.HMAC,
		signsBody: w.Scheme.SignsBody(),
		newHash:   sha256.New,
		store:     opts.Store,
		now:       opts.Now,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.subject == "" {
		v.subject = w.Name
	}
	if v.window == 0 {
		// A timestamp may be up to tolerance old or ahead, so a signature
		// stays acceptable for twice the tolerance.
		v.window = 2 * v.tolerance
	}
	if v.store == nil {
		v.replay = config.ReplayOff
	}
	if g := w.HMAC; g != nil {
		switch g.Algorithm {
		case "sha1":
			v.newHash = sha1.New
		case "sha512":
			v.newHash = sha512.New
		}
	}
	if w.Scheme == config.SchemeTwilio {
		v.newHash = sha1.New
		if w.Twilio != nil {
			v.baseURL = strings.TrimRight(w.Twilio.PublicBaseURL, "/")
		}
	}
	for i, s := range w.Secrets {
		val := s.Value()
		if len(val) == 0 && opts.AllowUnresolved {
			continue
		}
		if len(val) == 0 {
			return nil, fieldErr(config.Path("secrets").Index(i), "secret %s is not resolved", s.Ref())
		}
		key := val
		if w.Scheme == config.SchemeGitLab {
			// Only the digest is kept: comparing digests of equal length
			// tells a timing observer nothing of the token's length.
			sum := sha256.Sum256(val)
			v.tokens = append(v.tokens, sum[:])
			continue
		}
		if w.Scheme == config.SchemeStandard || w.Scheme == config.SchemeSvix {
			// whsec_<base64>: the key is the decoded part.
			b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(string(val), "whsec_"))
			if err != nil || len(b) < 16 {
				return nil, fieldErr(config.Path("secrets").Index(i), "secret %s is not a Standard Webhooks secret (whsec_ and at least 16 base64 bytes)", s.Ref())
			}
			key = b
		}
		v.keys = append(v.keys, key)
	}
	for i, k := range w.PublicKeys {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(k, "whpk_"))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fieldErr(config.Path("publicKeys").Index(i), "is not an Ed25519 public key (whpk_ and 32 base64 bytes)")
		}
		v.pubKeys = append(v.pubKeys, ed25519.PublicKey(b))
	}
	return v, nil
}

func fieldErr(p config.Path, format string, args ...any) error {
	return &config.FieldError{Path: p, Msg: fmt.Sprintf(format, args...)}
}

// Name is the source's name.
func (v *Verifier) Name() string { return v.name }

// StoreErrors counts replay-store failures.
func (v *Verifier) StoreErrors() uint64 { return v.storeErrors.Load() }

// delivery is what a scheme reads from a request.
type delivery struct {
	sigs    [][]byte // HMAC signatures
	edSigs  [][]byte // Ed25519 signatures (Standard Webhooks v1a)
	ts      int64
	hasTS   bool
	id      string
	content []byte // the signed content
	// alt is another content the sender may have signed: Twilio signs
	// the URL with or without the port, inconsistently.
	alt []byte
	// bodySHA256 is the body's hash that the signed content names
	// (Twilio's bodySHA256 query parameter); nil when none does.
	bodySHA256 []byte
	// token is the SHA-256 of a static token (GitLab).
	token []byte
	// problem says why parsing failed, for gatehouse check.
	problem string
}

// Verify checks the delivery in r. On success the identity is the
// source's (subject, tier); otherwise the reason says why not.
func (v *Verifier) Verify(ctx context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	if code := v.checkBody(r, ex); code != core.OK {
		return nil, code
	}
	d, code := v.parse(r)
	if code != core.OK {
		if ex != nil {
			if d.problem != "" {
				ex.Step("%s signature headers: %s: %s", v.scheme, code, d.problem)
			} else {
				ex.Step("%s signature headers: %s", v.scheme, code)
			}
		}
		return nil, code
	}
	if d.hasTS {
		now := v.now().Unix()
		if diff := now - d.ts; diff > int64(v.tolerance/time.Second) || -diff > int64(v.tolerance/time.Second) {
			if ex != nil {
				ex.Step("timestamp %d is %ds from now; tolerance is %s", d.ts, diff, v.tolerance)
			}
			return nil, core.WebhookTimestampStale
		}
	}
	if d.bodySHA256 != nil {
		sum := sha256.Sum256(r.Body)
		if !hmac.Equal(sum[:], d.bodySHA256) {
			if ex != nil {
				ex.Step("the body's SHA-256 is not the bodySHA256 of the signed URL: the body was changed")
			}
			return nil, core.WebhookSignatureInvalid
		}
	}
	signed, ok := v.match(&d)
	if !ok {
		if ex != nil {
			ex.Step("no signature matches any of the %d secret(s) of source %s", len(v.keys)+len(v.pubKeys)+len(v.tokens), v.name)
		}
		return nil, core.WebhookSignatureInvalid
	}
	if ex != nil {
		ex.Step("signature verified (%s scheme, source %s)", v.scheme, v.name)
	}
	if code := v.checkReplay(ctx, &d, signed, ex); code != core.OK {
		return nil, code
	}
	return &core.Identity{Method: contract.AuthMethodWebhook, Subject: v.subject, Tier: v.tier, KeyID: v.name}, core.OK
}

// checkBody refuses a body the signature cannot cover whole: larger than
// maxBodySize, truncated by Envoy, or announced but not sent. A scheme
// that signs no body (gitlab) does not need it, and Envoy is not asked
// to send it.
func (v *Verifier) checkBody(r *core.Request, ex core.Explainer) core.Code {
	if !v.signsBody {
		return core.OK
	}
	if r.PartialBody || len(r.Body) > v.maxBody {
		if ex != nil {
			ex.Step("body is larger than maxBodySize %d (or Envoy truncated it)", v.maxBody)
		}
		return core.WebhookBodyTooLarge
	}
	if cl, ok := r.Headers["content-length"]; ok && len(r.Body) == 0 && cl != "0" && cl != "" {
		if ex != nil {
			ex.Step("content-length is %s but Envoy sent no body: is with_request_body set on the route?", cl)
		}
		return core.WebhookBodyMissing
	}
	return core.OK
}

// match reports whether a signature verified, and which signed content
// it verified. Every candidate is compared with every key in constant
// time, and the comparisons go on after a match.
func (v *Verifier) match(d *delivery) (signed []byte, ok bool) {
	contents := [][]byte{d.content}
	if d.alt != nil {
		contents = append(contents, d.alt)
	}
	for _, content := range contents {
		for _, key := range v.keys {
			m := hmac.New(v.newHash, key)
			m.Write(content)
			want := m.Sum(nil)
			for _, s := range d.sigs {
				if hmac.Equal(want, s) && !ok {
					signed, ok = content, true
				}
			}
		}
	}
	for _, pub := range v.pubKeys {
		for _, s := range d.edSigs {
			if len(s) == ed25519.SignatureSize && ed25519.Verify(pub, d.content, s) && !ok {
				signed, ok = d.content, true
			}
		}
	}
	if d.token != nil {
		for _, t := range v.tokens {
			if hmac.Equal(t, d.token) && !ok {
				signed, ok = d.content, true
			}
		}
	}
	return signed, ok
}

func (v *Verifier) checkReplay(ctx context.Context, d *delivery, signed []byte, ex core.Explainer) core.Code {
	h := sha256.New()
	switch v.replay {
	case config.ReplayOff:
		return core.OK
	case config.ReplayID:
		if d.id == "" || len(d.id) > 256 {
			if ex != nil {
				ex.Step("replay guard by id, but the delivery has no usable id")
			}
			return core.WebhookSignatureMalformed
		}
		h.Write([]byte("id\x00"))
		h.Write([]byte(d.id))
	default:
		// The signed content, not the signature that matched: during a
		// secret rotation a delivery carries one signature per secret,
		// and a replay that keeps only another of them is the same
		// delivery. The content (timestamp and id included, where the
		// scheme signs them) names it whichever signature verified; for
		// Twilio it is the variant of the URL that verified, so that a
		// replay that adds or drops the default port is the same too.
		h.Write([]byte("content\x00"))
		h.Write(signed)
	}
	sum := h.Sum(nil)
	key := kv.NamespaceWebhookReplay + v.name + ":" + hex.EncodeToString(sum[:16])
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	fresh, err := v.store.SetNX(ctx, key, []byte{1}, v.window)
	if err != nil {
		v.storeErrors.Add(1)
		if v.failOpen {
			if ex != nil {
				ex.Step("replay store unavailable (%v); replayFailureMode is open, so the delivery passes unguarded", err)
			}
			return core.OK
		}
		if ex != nil {
			ex.Step("replay store unavailable (%v); replayFailureMode is closed", err)
		}
		return core.ReplayStoreUnavailable
	}
	if !fresh {
		if ex != nil {
			ex.Step("this delivery was already accepted within the last %s", v.window)
		}
		return core.WebhookReplayed
	}
	if ex != nil {
		ex.Step("replay guard: first sight of this delivery (remembered for %s, shared store: %t)", v.window, v.store.Shared())
	}
	return core.OK
}

// parse reads the scheme's headers into a delivery.
func (v *Verifier) parse(r *core.Request) (delivery, core.Code) {
	switch v.scheme {
	case config.SchemeGitHub:
		return parseGitHub(r)
	case config.SchemeStripe:
		return parseStripe(r)
	case config.SchemeSlack:
		return parseSlack(r)
	case config.SchemeStandard:
		return parseStandard(r, standardHeaders)
	case config.SchemeSvix:
		return parseStandard(r, svixHeaders)
	case config.SchemeShopify:
		return parseShopify(r)
	case config.SchemeHMAC:
		return parseGeneric(r, v.generic)
	case config.SchemeTwilio:
		return parseTwilio(r, v.baseURL)
	case config.SchemeGitLab:
		return parseGitLab(r)
	}
	return delivery{}, core.InternalError
}

var errBadSig = errors.New("webhook: malformed signature")

// Header names, lower-case as Envoy sends them.
const (
	HeaderGitHubSignature   = "x-hub-signature-256"
	HeaderGitHubDelivery    = "x-github-delivery"
	HeaderStripeSignature   = "stripe-signature"
	HeaderSlackSignature    = "x-slack-signature"
	HeaderSlackTimestamp    = "x-slack-request-timestamp"
	HeaderStandardID        = "webhook-id"
	HeaderStandardTimestamp = "webhook-timestamp"
	HeaderStandardSignature = "webhook-signature"
	HeaderShopifySignature  = "x-shopify-hmac-sha256"
	HeaderShopifyID         = "x-shopify-webhook-id"
	HeaderSvixID            = "svix-id"
	HeaderSvixTimestamp     = "svix-timestamp"
	HeaderSvixSignature     = "svix-signature"
)

// standardNames are the three headers of the Standard Webhooks scheme:
// webhook-* as the specification names them, svix-* as Svix, where the
// scheme comes from, sends them.
type standardNames struct{ id, timestamp, signature string }

var (
	standardHeaders = standardNames{HeaderStandardID, HeaderStandardTimestamp, HeaderStandardSignature}
	svixHeaders     = standardNames{HeaderSvixID, HeaderSvixTimestamp, HeaderSvixSignature}
)

func parseGitHub(r *core.Request) (delivery, core.Code) {
	h, ok := r.Headers[HeaderGitHubSignature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	hx, ok := strings.CutPrefix(h, "sha256=")
	if !ok || len(hx) != 64 {
		return delivery{}, core.WebhookSignatureMalformed
	}
	sig, err := hex.DecodeString(hx)
	if err != nil {
		return delivery{}, core.WebhookSignatureMalformed
	}
	return delivery{sigs: [][]byte{sig}, id: r.Headers[HeaderGitHubDelivery], content: r.Body}, core.OK
}

// parseStripe reads "t=<unix>,v1=<hex>[,v1=<hex>...]"; other schemes (v0,
// Stripe's test-mode decoy) are ignored, as Stripe asks, against
// downgrade attacks.
func parseStripe(r *core.Request) (delivery, core.Code) {
	h, ok := r.Headers[HeaderStripeSignature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	var d delivery
	ts := ""
	for _, part := range strings.Split(h, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return delivery{}, core.WebhookSignatureMalformed
		}
		switch k {
		case "t":
			if ts != "" {
				return delivery{}, core.WebhookSignatureMalformed
			}
			ts = val
		case "v1":
			sig, err := hex.DecodeString(val)
			if err != nil || len(sig) != sha256.Size {
				return delivery{}, core.WebhookSignatureMalformed
			}
			d.sigs = append(d.sigs, sig)
		}
	}
	if len(d.sigs) == 0 || len(d.sigs) > 8 {
		return delivery{}, core.WebhookSignatureMalformed
	}
	if d.ts, ok = parseUnix(ts); !ok {
		return delivery{}, core.WebhookSignatureMalformed
	}
	d.hasTS = true
	d.content = concat([]byte(ts), []byte("."), r.Body)
	return d, core.OK
}

func parseSlack(r *core.Request) (delivery, core.Code) {
	h, ok := r.Headers[HeaderSlackSignature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	hx, ok := strings.CutPrefix(h, "v0=")
	if !ok || len(hx) != 64 {
		return delivery{}, core.WebhookSignatureMalformed
	}
	sig, err := hex.DecodeString(hx)
	if err != nil {
		return delivery{}, core.WebhookSignatureMalformed
	}
	ts := r.Headers[HeaderSlackTimestamp]
	t, ok := parseUnix(ts)
	if !ok {
		return delivery{}, core.WebhookSignatureMalformed
	}
	return delivery{sigs: [][]byte{sig}, ts: t, hasTS: true, content: concat([]byte("v0:"+ts+":"), r.Body)}, core.OK
}

// parseStandard reads Standard Webhooks headers (named as in names): the
// signature header is a space-separated list of "v1,<base64 HMAC>" and
// "v1a,<base64 Ed25519>", one per active secret during a rotation.
func parseStandard(r *core.Request, names standardNames) (delivery, core.Code) {
	h, ok := r.Headers[names.signature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	id, okID := r.Headers[names.id]
	ts, okTS := r.Headers[names.timestamp]
	if !okID || !okTS || id == "" || len(id) > 256 || strings.ContainsAny(id, ". ,") {
		return delivery{}, core.WebhookSignatureMalformed
	}
	var d delivery
	if d.ts, ok = parseUnix(ts); !ok {
		return delivery{}, core.WebhookSignatureMalformed
	}
	d.hasTS, d.id = true, id
	for _, f := range strings.Fields(h) {
		ver, b64, ok := strings.Cut(f, ",")
		if !ok {
			return delivery{}, core.WebhookSignatureMalformed
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return delivery{}, core.WebhookSignatureMalformed
		}
		switch ver {
		case "v1":
			d.sigs = append(d.sigs, sig)
		case "v1a":
			d.edSigs = append(d.edSigs, sig)
		}
	}
	if n := len(d.sigs) + len(d.edSigs); n == 0 || n > 16 {
		return delivery{}, core.WebhookSignatureMalformed
	}
	d.content = concat([]byte(id+"."+ts+"."), r.Body)
	return d, core.OK
}

func parseShopify(r *core.Request) (delivery, core.Code) {
	h, ok := r.Headers[HeaderShopifySignature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	sig, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(sig) != sha256.Size {
		return delivery{}, core.WebhookSignatureMalformed
	}
	return delivery{sigs: [][]byte{sig}, id: r.Headers[HeaderShopifyID], content: r.Body}, core.OK
}

func parseGeneric(r *core.Request, g *config.GenericHMAC) (delivery, core.Code) {
	h, ok := r.Headers[g.Header]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	var d delivery
	if g.Separator == "" {
		enc, ok := strings.CutPrefix(h, g.Prefix)
		if !ok || enc == "" || strings.IndexByte(enc, ',') >= 0 {
			return delivery{}, core.WebhookSignatureMalformed
		}
		sig, err := decodeSig(enc, g.Encoding)
		if err != nil {
			return delivery{}, core.WebhookSignatureMalformed
		}
		d.sigs = [][]byte{sig}
	} else {
		sigs, problem := splitSignatures(h, g)
		if problem != "" {
			return delivery{problem: problem}, core.WebhookSignatureMalformed
		}
		d.sigs = sigs
	}
	ts := ""
	if g.TimestampHeader != "" {
		ts = r.Headers[g.TimestampHeader]
		if d.ts, ok = parseUnix(ts); !ok {
			return delivery{}, core.WebhookSignatureMalformed
		}
		d.hasTS = true
	}
	if g.IDHeader != "" {
		d.id = r.Headers[g.IDHeader]
	}
	d.content = expand(g.Template, r.Body, ts, d.id)
	return d, core.OK
}

// maxListed bounds the signatures of one header: a rotation needs two or
// three, and each one costs an HMAC per secret.
const maxListed = 16

// splitSignatures reads a generic header that lists signatures separated
// by g.Separator: each element, trimmed of spaces, is g.Prefix followed by
// an encoded signature. Elements without the prefix belong to another
// scheme (a newer version, an algorithm not configured) and are skipped,
// as Stripe and Standard Webhooks ask, so that a list cannot downgrade
// verification to them; an element with the prefix that does not decode
// makes the header malformed. Empty elements (a doubled separator) are
// skipped.
func splitSignatures(h string, g *config.GenericHMAC) ([][]byte, string) {
	if strings.Count(h, g.Separator) >= 4*maxListed {
		return nil, fmt.Sprintf("more than %d elements", 4*maxListed)
	}
	var sigs [][]byte
	for _, e := range strings.Split(h, g.Separator) {
		e = strings.Trim(e, " \t")
		if e == "" {
			continue
		}
		enc, ok := strings.CutPrefix(e, g.Prefix)
		if !ok {
			continue
		}
		sig, err := decodeSig(enc, g.Encoding)
		if enc == "" || err != nil {
			return nil, fmt.Sprintf("an element with the prefix %q is not a %s signature", g.Prefix, g.Encoding)
		}
		sigs = append(sigs, sig)
	}
	switch {
	case len(sigs) == 0 && g.Prefix == "":
		return nil, "no signature"
	case len(sigs) == 0:
		return nil, fmt.Sprintf("no element carries the prefix %q", g.Prefix)
	case len(sigs) > maxListed:
		return nil, fmt.Sprintf("more than %d signatures", maxListed)
	}
	return sigs, ""
}

func decodeSig(s string, enc config.SignatureEncoding) ([]byte, error) {
	switch enc {
	case "base64":
		return base64.StdEncoding.DecodeString(s)
	case "base64url":
		return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	case "hex":
		return hex.DecodeString(s)
	}
	return nil, errBadSig
}

// expand renders a generic template; only {body}, {timestamp} and {id}
// are special.
func expand(tmpl string, body []byte, ts, id string) []byte {
	out := make([]byte, 0, len(tmpl)+len(body)+len(ts)+len(id))
	for tmpl != "" {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			out = append(out, tmpl...)
			break
		}
		out = append(out, tmpl[:i]...)
		rest := tmpl[i:]
		switch {
		case strings.HasPrefix(rest, "{body}"):
			out = append(out, body...)
			tmpl = rest[len("{body}"):]
		case strings.HasPrefix(rest, "{timestamp}"):
			out = append(out, ts...)
			tmpl = rest[len("{timestamp}"):]
		case strings.HasPrefix(rest, "{id}"):
			out = append(out, id...)
			tmpl = rest[len("{id}"):]
		default:
			out = append(out, '{')
			tmpl = rest[1:]
		}
	}
	return out
}

// parseUnix reads a unix time in seconds: digits only, 1 to 12 of them.
func parseUnix(s string) (int64, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
