package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/kv"
)

// twilioSign is Twilio's signature over data (the URL and the sorted
// parameters, already concatenated): the published vectors prove the
// verifier builds data the same way.
func twilioSign(token, data string) string {
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(data))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

const (
	twilioURL    = "https://mycompany.com/myapp.php?foo=1&bar=2"
	twilioForm   = "Digits=1234&CallSid=CA1234567890ABCDE&To=%2B18005551212&Caller=%2B14158675310&From=%2B14158675310"
	twilioSigned = "CallSidCA1234567890ABCDECaller+14158675310Digits1234From+14158675310To+18005551212"
	twilioDocSig = "GvWf1cFY/Q7PnoempGyD5oXAezc=" // Twilio's worked example
)

// twilioReq is a form POST as Envoy describes it: scheme, :authority and
// :path as it saw them.
func twilioReq(scheme, host, path, sig, body string, extra ...string) *core.Request {
	h := map[string]string{"content-type": "application/x-www-form-urlencoded"}
	if sig != "" {
		h[HeaderTwilioSignature] = sig
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	r := req(h, body)
	r.Scheme, r.Host, r.Path = scheme, host, path
	return r
}

func TestTwilioBadInput(t *testing.T) {
	jsonBody := `{"a":1}`
	sum := sha256.Sum256([]byte(jsonBody))
	hashed := "/hook?bodySHA256=" + hex.EncodeToString(sum[:])
	hashedSig := twilioSign("12345", "https://mycompany.com"+hashed)
	path := "/myapp.php?foo=1&bar=2"
	tests := []struct {
		name string
		r    *core.Request
		want core.Code
	}{
		{"docs example", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm), core.OK},
		{"no signature", twilioReq("https", "mycompany.com", path, "", twilioForm), core.WebhookSignatureMissing},
		{"signature not base64", twilioReq("https", "mycompany.com", path, "!!"+twilioDocSig[2:], twilioForm), core.WebhookSignatureMalformed},
		{"signature header sent twice", twilioReq("https", "mycompany.com", path, twilioDocSig+","+twilioDocSig, twilioForm), core.WebhookSignatureMalformed},
		{"an HMAC-SHA256 (a Webhooks Rule)", twilioReq("https", "mycompany.com", path, base64.StdEncoding.EncodeToString(make([]byte, 32)), twilioForm), core.WebhookSignatureMalformed},
		{"signed under a Webhooks Rule", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm, headerTwilioRule, "key=KS1,algorithm=HMAC_SHA256"), core.WebhookSignatureMalformed},
		{"a parameter added", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm+"&Extra=1"), core.WebhookSignatureInvalid},
		{"a value changed", twilioReq("https", "mycompany.com", path, twilioDocSig, strings.Replace(twilioForm, "1234&", "9999&", 1)), core.WebhookSignatureInvalid},
		{"the query changed", twilioReq("https", "mycompany.com", "/myapp.php?foo=1&bar=3", twilioDocSig, twilioForm), core.WebhookSignatureInvalid},
		{"another host", twilioReq("https", "evil.example", path, twilioDocSig, twilioForm), core.WebhookSignatureInvalid},
		{"plain http seen", twilioReq("http", "mycompany.com", path, twilioDocSig, twilioForm), core.WebhookSignatureInvalid},
		{"no scheme", twilioReq("", "mycompany.com", path, twilioDocSig, twilioForm), core.WebhookSignatureMalformed},
		{"no authority", twilioReq("https", "", path, twilioDocSig, twilioForm), core.WebhookSignatureMalformed},
		{"form sent as text", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm, "content-type", "text/plain"), core.WebhookSignatureMalformed},
		{"form without content type", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm, "content-type", ""), core.WebhookSignatureMalformed},
		{"form with charset", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm, "content-type", "application/x-www-form-urlencoded; charset=utf-8"), core.OK},
		{"form with a semicolon separator", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm+";Extra=1"), core.WebhookSignatureMalformed},
		{"form with a bad escape", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm+"&X=%zz"), core.WebhookSignatureMalformed},
		{"too many parameters", twilioReq("https", "mycompany.com", path, twilioDocSig, strings.Repeat("&", maxTwilioParams)+"b=2"), core.WebhookSignatureMalformed},
		{"JSON without bodySHA256", twilioReq("https", "mycompany.com", "/hook", twilioSign("12345", "https://mycompany.com/hook"), jsonBody, "content-type", "application/json"), core.WebhookSignatureMalformed},
		{"JSON with bodySHA256", twilioReq("https", "mycompany.com", hashed, hashedSig, jsonBody, "content-type", "application/json"), core.OK},
		{"JSON body changed", twilioReq("https", "mycompany.com", hashed, hashedSig, `{"a":2}`, "content-type", "application/json"), core.WebhookSignatureInvalid},
		{"bodySHA256 twice", twilioReq("https", "mycompany.com", hashed+"&bodySHA256="+hex.EncodeToString(sum[:]), hashedSig, jsonBody), core.WebhookSignatureMalformed},
		{"bodySHA256 not hex", twilioReq("https", "mycompany.com", "/hook?bodySHA256=zz", hashedSig, jsonBody), core.WebhookSignatureMalformed},
		{"a GET signs the URL alone", twilioReq("https", "mycompany.com", path+"&Digits=1", twilioSign("12345", twilioURL+"&Digits=1"), ""), core.OK},
		{"a body too large", twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm+"&Pad="+strings.Repeat("x", 1024)), core.WebhookBodyTooLarge},
	}
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]\nmaxBodySize: 1KiB", map[string]string{"S": "12345"}, 1, kv.NewMemory(0))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := v.Verify(context.Background(), tt.r, nil); got != tt.want {
				t.Errorf("Verify(%s) = %v; want %v", tt.name, got, tt.want)
			}
		})
	}
}

// TestTwilioAuthorityCannotMoveThePath: a request signed for
// https://a.example/x/y, replayed with :authority "a.example/x" and :path
// "/y", concatenates to the same URL; it must not verify (it would reach
// the route of /y).
func TestTwilioAuthorityCannotMoveThePath(t *testing.T) {
	sig := twilioSign("12345", "https://a.example/x/y")
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]", map[string]string{"S": "12345"}, 1, nil)
	if _, code := v.Verify(context.Background(), twilioReq("https", "a.example", "/x/y", sig, ""), nil); code != core.OK {
		t.Fatalf("Verify(as signed) = %v; want allowed", code)
	}
	for _, host := range []string{"a.example/x", "a.example?", "u@a.example", "a.example#", `a.example\x`, "a.example x"} {
		if _, code := v.Verify(context.Background(), twilioReq("https", host, "/y", sig, ""), nil); code == core.OK {
			t.Errorf("Verify(:authority %q) = allowed; want refused", host)
		}
	}
}

// TestTwilioPublicBaseURL: behind a TLS-terminating load balancer that
// also strips a path prefix, Envoy sees http://internal/myapp.php?...;
// the configured public base URL restores what Twilio signed.
func TestTwilioPublicBaseURL(t *testing.T) {
	behind := twilioReq("http", "gatehouse.internal:8080", "/myapp.php?foo=1&bar=2", twilioDocSig, twilioForm)
	plain := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]", map[string]string{"S": "12345"}, 1, nil)
	if _, code := plain.Verify(context.Background(), behind, nil); code != core.WebhookSignatureInvalid {
		t.Errorf("Verify(behind a proxy, no publicBaseURL) = %v; want webhook_signature_invalid", code)
	}
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]\ntwilio: {publicBaseURL: \"https://mycompany.com\"}", map[string]string{"S": "12345"}, 1, nil)
	if _, code := v.Verify(context.Background(), behind, nil); code != core.OK {
		t.Errorf("Verify(behind a proxy, publicBaseURL) = %v; want allowed", code)
	}
	// The host Envoy saw no longer matters, not even a malformed one.
	behind.Host = "a.example/x"
	if _, code := v.Verify(context.Background(), behind, nil); code != core.OK {
		t.Errorf("Verify(publicBaseURL, odd :authority) = %v; want allowed", code)
	}
	prefixed := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]\ntwilio: {publicBaseURL: \"https://mycompany.com/twilio/\"}", map[string]string{"S": "12345"}, 1, nil)
	sig := twilioSign("12345", "https://mycompany.com/twilio/sms"+"BodyHello World!")
	if _, code := prefixed.Verify(context.Background(), twilioReq("http", "10.0.0.1", "/sms", sig, "Body=Hello+World%21"), nil); code != core.OK {
		t.Errorf("Verify(publicBaseURL with a path prefix) = %v; want allowed", code)
	}
}

// TestTwilioRepeatedParameters: a name given several values is signed
// once per distinct value, in value order, as Twilio's libraries do.
func TestTwilioRepeatedParameters(t *testing.T) {
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]", map[string]string{"S": "12345"}, 1, nil)
	sig := twilioSign("12345", "https://hooks.example.com/hook"+"AddOnsx"+"Ida1Ida2Ida3")
	for _, body := range []string{"Id=a3&AddOns=x&Id=a1&Id=a2", "Id=a1&Id=a2&Id=a3&AddOns=x&Id=a2"} {
		if _, code := v.Verify(context.Background(), twilioReq("https", "hooks.example.com", "/hook", sig, body), nil); code != core.OK {
			t.Errorf("Verify(%q) = %v; want allowed", body, code)
		}
	}
}

// TestTwilioRotation: during a promotion of the secondary auth token,
// both tokens verify.
func TestTwilioRotation(t *testing.T) {
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:NEW, env:OLD]", map[string]string{"NEW": "new-token", "OLD": "12345"}, 1, nil)
	if _, code := v.Verify(context.Background(), twilioReq("https", "mycompany.com", "/myapp.php?foo=1&bar=2", twilioDocSig, twilioForm), nil); code != core.OK {
		t.Errorf("Verify(signed with the old token) = %v; want allowed", code)
	}
	sig := twilioSign("new-token", twilioURL+twilioSigned)
	if _, code := v.Verify(context.Background(), twilioReq("https", "mycompany.com", "/myapp.php?foo=1&bar=2", sig, twilioForm), nil); code != core.OK {
		t.Errorf("Verify(signed with the new token) = %v; want allowed", code)
	}
}

// TestTwilioReplay: Twilio signs no timestamp or id, so by default
// (replay: auto) nothing is guarded and two identical requests, which
// Twilio sends legitimately, both pass. replay: signature guards exact
// copies for the window: a copy with the default port added, or with
// its parameters reordered or re-encoded, is the same delivery.
func TestTwilioReplay(t *testing.T) {
	path := "/myapp.php?foo=1&bar=2"
	auto := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]", map[string]string{"S": "12345"}, 1, kv.NewMemory(0))
	for i := 0; i < 2; i++ {
		if _, code := auto.Verify(context.Background(), twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm), nil); code != core.OK {
			t.Fatalf("Verify(identical request %d, replay auto) = %v; want allowed", i+1, code)
		}
	}
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]\nreplay: signature", map[string]string{"S": "12345"}, 1, kv.NewMemory(0))
	if _, code := v.Verify(context.Background(), twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm), nil); code != core.OK {
		t.Fatalf("Verify(first) = %v; want allowed", code)
	}
	reordered := "From=%2b14158675310&Caller=%2B14158675310&To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=12%334"
	for _, r := range []*core.Request{
		twilioReq("https", "mycompany.com", path, twilioDocSig, twilioForm),
		twilioReq("https", "mycompany.com:443", path, twilioDocSig, twilioForm),
		twilioReq("https", "mycompany.com", path, twilioDocSig, reordered),
	} {
		if _, code := v.Verify(context.Background(), r, nil); code != core.WebhookReplayed {
			t.Errorf("Verify(copy via %s, body %q) = %v; want webhook_replayed", r.Host, r.Body, code)
		}
	}
}

// TestTwilioExplains: gatehouse check says why a request was refused.
func TestTwilioExplains(t *testing.T) {
	v := newVerifier(t, "name: tw\nscheme: twilio\nsecrets: [env:S]", map[string]string{"S": "12345"}, 1, nil)
	var ex steps
	v.Verify(context.Background(), twilioReq("https", "mycompany.com", "/hook", twilioDocSig, `{"a":1}`, "content-type", "application/json"), &ex)
	if !strings.Contains(strings.Join(ex, "\n"), "neither a form") {
		t.Errorf("steps = %q; want the reason the body is not covered", ex)
	}
}

type steps []string

func (s *steps) Step(format string, args ...any) { *s = append(*s, fmt.Sprintf(format, args...)) }

// FuzzTwilioRequest feeds arbitrary authorities, paths, content types,
// signature headers and bodies to the twilio scheme: no panic, and no
// request verifies without the auth token. What it parses starts with the
// URL as Envoy saw it, and its other candidate differs only in the port.
func FuzzTwilioRequest(f *testing.F) {
	f.Add("mycompany.com", "/myapp.php?foo=1&bar=2", "application/x-www-form-urlencoded", twilioDocSig, twilioForm)
	f.Add("mycompany.com:443", "/hook?bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620", "application/json", "y77kIzt2vzLz71DgmJGsen2scGs=", `{"property": "value", "boolean": true}`)
	f.Add("[::1]:8443", "/x?bodySHA256=&bodySHA256=", "application/x-www-form-urlencoded; charset=utf-8", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "a=1&a=2&&b=%zz;c")
	f.Add("a.example/x", "/y", "", "", "")
	v := newVerifier(f, "name: tw\nscheme: twilio\nsecrets: [env:S]\nreplay: off", map[string]string{"S": "fuzz-token"}, 1, nil)
	f.Fuzz(func(t *testing.T, host, path, contentType, sig, body string) {
		r := twilioReq("https", host, path, sig, body, "content-type", contentType)
		if _, code := v.Verify(context.Background(), r, nil); code == core.OK {
			t.Fatalf("Verify(host %q, path %q, type %q, signature %q, body %q) = allowed without the token", host, path, contentType, sig, body)
		}
		d, code := parseTwilio(r, "")
		if code != core.OK {
			return
		}
		asSeen := "https://" + host + path
		if !strings.HasPrefix(string(d.content), asSeen) {
			t.Fatalf("parseTwilio(%q, %q) content %q does not start with %q", host, path, d.content, asSeen)
		}
		if string(d.alt) == string(d.content) || !strings.HasPrefix(string(d.alt), "https://") {
			t.Fatalf("parseTwilio(%q, %q) alternative %q", host, path, d.alt)
		}
	})
}
