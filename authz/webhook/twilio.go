package webhook

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/authz/internal/core"
)

// Twilio's headers and query parameter.
const (
	// HeaderTwilioSignature is base64 HMAC-SHA1, keyed with the account's
	// auth token, of the URL Twilio called followed by the POST form
	// parameters sorted by name, each as name then value.
	HeaderTwilioSignature = "x-twilio-signature"
	// headerTwilioRule names the key and algorithm of a delivery signed
	// under a Twilio Webhooks Rule (a shared key, HMAC-SHA256), which the
	// twilio scheme does not verify.
	headerTwilioRule = "x-twilio-webhooks-signature-settings"
	// twilioBodyHash is the query parameter that carries the hex SHA-256
	// of a JSON body: the URL that holds it is what Twilio signs.
	twilioBodyHash = "bodySHA256"
)

// maxTwilioParams bounds the form parameters of one request: Twilio sends
// a few dozen; sorting and concatenating more is work for nothing.
const maxTwilioParams = 1000

// parseTwilio reads a Twilio request. The signed URL is baseURL (when the
// source configures one) or the scheme and :authority Envoy saw, followed
// by the path and query Envoy saw. A JSON body is bound by the bodySHA256
// query parameter of the signed URL; a form body by its parameters, which
// follow the URL in the signed content. Twilio signs the URL with or
// without the port inconsistently (its own libraries try both), so both
// are candidates.
func parseTwilio(r *core.Request, baseURL string) (delivery, core.Code) {
	h, ok := r.Headers[HeaderTwilioSignature]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	if _, ok := r.Headers[headerTwilioRule]; ok {
		return delivery{problem: "the delivery is signed under a Twilio Webhooks Rule (" + headerTwilioRule + "), which the twilio scheme does not verify"}, core.WebhookSignatureMalformed
	}
	sig, err := base64.StdEncoding.DecodeString(h)
	if err != nil || len(sig) != sha1.Size {
		return delivery{problem: HeaderTwilioSignature + " is not one base64 HMAC-SHA1"}, core.WebhookSignatureMalformed
	}
	base := baseURL
	if base == "" {
		if problem := checkOrigin(r.Scheme, r.Host); problem != "" {
			return delivery{problem: problem}, core.WebhookSignatureMalformed
		}
		base = r.Scheme + "://" + r.Host
	}
	if !strings.HasPrefix(r.Path, "/") {
		return delivery{problem: "the path does not start with /"}, core.WebhookSignatureMalformed
	}
	d := delivery{sigs: [][]byte{sig}}
	var params []byte
	_, query, _ := strings.Cut(r.Path, "?")
	hash, n := queryParam(query, twilioBodyHash)
	switch {
	case n > 1:
		return delivery{problem: "the query holds " + twilioBodyHash + " more than once"}, core.WebhookSignatureMalformed
	case n == 1:
		b, err := hex.DecodeString(hash)
		if err != nil || len(b) != sha256.Size {
			return delivery{problem: twilioBodyHash + " is not a hex SHA-256"}, core.WebhookSignatureMalformed
		}
		d.bodySHA256 = b
	case len(r.Body) > 0:
		var problem string
		if params, problem = twilioParams(r); problem != "" {
			return delivery{problem: problem}, core.WebhookSignatureMalformed
		}
	}
	asSeen, other := portVariants(base)
	d.content = concat([]byte(asSeen), []byte(r.Path), params)
	d.alt = concat([]byte(other), []byte(r.Path), params)
	return d, core.OK
}

// checkOrigin says why the scheme and :authority Envoy saw cannot begin a
// URL, or "" when they can. An authority holding a path, query or
// credentials could move the boundary between host and path: a request
// signed for https://a.example/x/y, replayed with :authority a.example/x
// and :path /y, would reach another route and still verify.
func checkOrigin(scheme, host string) string {
	if scheme != "https" && scheme != "http" {
		return fmt.Sprintf("the scheme Envoy saw is %q, not http or https; set twilio.publicBaseURL", scheme)
	}
	if host == "" {
		return "Envoy sent no :authority; set twilio.publicBaseURL"
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("/?#@\\", c) >= 0 {
			return "the :authority is not a host[:port]"
		}
	}
	return ""
}

// queryParam returns the raw value of the query parameter name, and how
// many times it occurs. Twilio writes bodySHA256 literally; the query is
// not decoded, so that a URL that does not parse as a form is still one
// Twilio can call.
func queryParam(query, name string) (string, int) {
	val, n := "", 0
	for query != "" {
		var comp string
		comp, query, _ = strings.Cut(query, "&")
		if k, v, _ := strings.Cut(comp, "="); k == name {
			val, n = v, n+1
		}
	}
	return val, n
}

// twilioParams renders a form body as Twilio signs it: the parameters
// sorted by name (byte order), each name followed by its value, decoded;
// a name given several values comes once per distinct value, in value
// order, as Twilio's own libraries compute it. A body that is not a form
// is covered by no signature and refused.
func twilioParams(r *core.Request) ([]byte, string) {
	mt, _, err := mime.ParseMediaType(r.Headers["content-type"])
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, "the body is neither a form (application/x-www-form-urlencoded) nor hashed by a " + twilioBodyHash + " query parameter, so no signature covers it"
	}
	if n := bytes.Count(r.Body, []byte("&")) + 1; n > maxTwilioParams {
		return nil, fmt.Sprintf("the form has more than %d parameters", maxTwilioParams)
	}
	vals, err := url.ParseQuery(string(r.Body))
	if err != nil {
		return nil, "the form body does not parse"
	}
	names := make([]string, 0, len(vals))
	size := 0
	for name, vs := range vals {
		names = append(names, name)
		for _, v := range vs {
			size += len(name) + len(v)
		}
	}
	slices.Sort(names)
	out := make([]byte, 0, size)
	for _, name := range names {
		vs := slices.Clone(vals[name])
		slices.Sort(vs)
		for _, v := range slices.Compact(vs) {
			out = append(out, name...)
			out = append(out, v...)
		}
	}
	return out, ""
}

// portVariants returns base as given and base with the port dropped (when
// it has one) or the scheme's default port added (when it has none).
func portVariants(base string) (asIs, other string) {
	scheme, rest, _ := strings.Cut(base, "://")
	auth, prefix := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		auth, prefix = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(auth, ':'); i > strings.LastIndexByte(auth, ']') && i < len(auth)-1 && allDigits(auth[i+1:]) {
		return base, scheme + "://" + auth[:i] + prefix
	}
	port := ":443"
	if scheme == "http" {
		port = ":80"
	}
	return base, scheme + "://" + auth + port + prefix
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
