package webhook

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/kv"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// source loads one webhook source from YAML the way the config loader
// does (so secrets are resolved from env), with env holding the secrets.
func source(t testing.TB, body string, env map[string]string) *config.WebhookSource {
	t.Helper()
	doc := "apiVersion: gatehouse/v1\nauthz:\n  webhooks:\n  - " + strings.ReplaceAll(strings.TrimSpace(body), "\n", "\n    ") + "\n"
	cfg, err := config.LoadBytes("<test>", []byte(doc), config.LoadOptions{LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	return &cfg.Authz.Webhooks[0]
}

func newVerifier(t testing.TB, body string, env map[string]string, now int64, store kv.Store) *Verifier {
	t.Helper()
	v, err := New(source(t, body, env), Options{Store: store, Now: func() time.Time { return time.Unix(now, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type vector struct {
	Name   string `json:"name"`
	Scheme string `json:"scheme"`
	Secret string `json:"secret"`
	// URL is the URL the request reached, as Envoy saw it (Twilio signs
	// it); empty means https://hooks.example.com/hook.
	URL     string            `json:"url"`
	Body    string            `json:"body"`
	Now     int64             `json:"now"`
	Headers map[string]string `json:"headers"`
}

// request is the vector's request as Envoy describes it in a
// CheckRequest, with body.
func (vec vector) request(t testing.TB, body string) *core.Request {
	t.Helper()
	r := req(vec.Headers, body)
	if vec.URL != "" {
		u, err := url.Parse(vec.URL)
		if err != nil {
			t.Fatal(err)
		}
		r.Scheme, r.Host, r.Path = u.Scheme, u.Host, u.RequestURI()
	}
	return r
}

func loadVectors(t testing.TB) []vector {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Vectors []vector }
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Vectors
}

func req(headers map[string]string, body string) *core.Request {
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	return &core.Request{Headers: h, Method: "POST", Scheme: "https", Host: "hooks.example.com", Path: "/hook", Body: []byte(body), BodyPresent: body != ""}
}

// TestProviderExamples verifies each provider's own documented example,
// and that changing one byte of it fails.
func TestProviderExamples(t *testing.T) {
	for _, vec := range loadVectors(t) {
		t.Run(vec.Name, func(t *testing.T) {
			v := newVerifier(t, fmt.Sprintf("name: %s\nscheme: %s\nsecrets: [env:S]\nreplay: off", vec.Name, vec.Scheme), map[string]string{"S": vec.Secret}, vec.Now, nil)
			if _, code := v.Verify(context.Background(), vec.request(t, vec.Body), nil); code != core.OK {
				t.Fatalf("Verify(%s example) = %v; want allowed", vec.Name, code)
			}
			if _, code := v.Verify(context.Background(), vec.request(t, vec.Body+" "), nil); code != core.WebhookSignatureInvalid {
				t.Errorf("Verify(%s example, body changed) = %v; want webhook_signature_invalid", vec.Name, code)
			}
		})
	}
}

func hmacHex(key, msg string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestBadInput(t *testing.T) {
	const now = 1700000000
	ts := fmt.Sprint(now)
	body := `{"event":"push"}`
	good := "sha256=" + hmacHex("s3cret", body)
	stripeGood := fmt.Sprintf("t=%s,v1=%s", ts, hmacHex("s3cret", ts+"."+body))
	slackGood := "v0=" + hmacHex("s3cret", "v0:"+ts+":"+body)
	stale := fmt.Sprint(now - 301)
	tests := []struct {
		name    string
		scheme  string
		headers map[string]string
		body    string
		partial bool
		want    core.Code
	}{
		{"github ok", "github", map[string]string{"x-hub-signature-256": good}, body, false, core.OK},
		{"github missing header", "github", nil, body, false, core.WebhookSignatureMissing},
		{"github duplicated header", "github", map[string]string{"x-hub-signature-256": good + "," + good}, body, false, core.WebhookSignatureMalformed},
		{"github sha1 only", "github", map[string]string{"x-hub-signature-256": "sha1=" + strings.Repeat("a", 40)}, body, false, core.WebhookSignatureMalformed},
		{"github not hex", "github", map[string]string{"x-hub-signature-256": "sha256=" + strings.Repeat("z", 64)}, body, false, core.WebhookSignatureMalformed},
		{"github wrong secret", "github", map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("other", body)}, body, false, core.WebhookSignatureInvalid},
		{"github empty body signed", "github", map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("s3cret", "")}, "", false, core.OK},
		{"github body missing", "github", map[string]string{"x-hub-signature-256": good, "content-length": "16"}, "", false, core.WebhookBodyMissing},
		{"github body too large", "github", map[string]string{"x-hub-signature-256": good}, strings.Repeat("x", 2048), false, core.WebhookBodyTooLarge},
		{"github partial body", "github", map[string]string{"x-hub-signature-256": good}, body, true, core.WebhookBodyTooLarge},
		{"stripe ok", "stripe", map[string]string{"stripe-signature": stripeGood}, body, false, core.OK},
		{"stripe two timestamps", "stripe", map[string]string{"stripe-signature": stripeGood + ",t=" + ts}, body, false, core.WebhookSignatureMalformed},
		{"stripe duplicated header", "stripe", map[string]string{"stripe-signature": stripeGood + "," + stripeGood}, body, false, core.WebhookSignatureMalformed},
		{"stripe v0 only", "stripe", map[string]string{"stripe-signature": "t=" + ts + ",v0=" + hmacHex("s3cret", ts+"."+body)}, body, false, core.WebhookSignatureMalformed},
		{"stripe stale", "stripe", map[string]string{"stripe-signature": fmt.Sprintf("t=%s,v1=%s", stale, hmacHex("s3cret", stale+"."+body))}, body, false, core.WebhookTimestampStale},
		{"stripe future", "stripe", map[string]string{"stripe-signature": fmt.Sprintf("t=%d,v1=%s", now+400, hmacHex("s3cret", fmt.Sprint(now+400)+"."+body))}, body, false, core.WebhookTimestampStale},
		{"stripe timestamp not a number", "stripe", map[string]string{"stripe-signature": "t=-5,v1=" + strings.Repeat("a", 64)}, body, false, core.WebhookSignatureMalformed},
		{"stripe second v1 matches", "stripe", map[string]string{"stripe-signature": fmt.Sprintf("t=%s,v1=%s,v1=%s", ts, strings.Repeat("0", 64), hmacHex("s3cret", ts+"."+body))}, body, false, core.OK},
		{"slack ok", "slack", map[string]string{"x-slack-signature": slackGood, "x-slack-request-timestamp": ts}, body, false, core.OK},
		{"slack missing timestamp", "slack", map[string]string{"x-slack-signature": slackGood}, body, false, core.WebhookSignatureMalformed},
		{"slack stale", "slack", map[string]string{"x-slack-signature": "v0=" + hmacHex("s3cret", "v0:"+stale+":"+body), "x-slack-request-timestamp": stale}, body, false, core.WebhookTimestampStale},
		{"shopify not base64", "shopify", map[string]string{"x-shopify-hmac-sha256": "!!!"}, body, false, core.WebhookSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, "name: src\nscheme: "+tt.scheme+"\nsecrets: [env:S]\nmaxBodySize: 1KiB\nreplay: off", map[string]string{"S": "s3cret"}, now, nil)
			r := req(tt.headers, tt.body)
			r.PartialBody = tt.partial
			if _, got := v.Verify(context.Background(), r, nil); got != tt.want {
				t.Errorf("Verify(%s) = %v; want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestRotationAcceptsEverySecret(t *testing.T) {
	body := "payload"
	v := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:NEW, env:OLD]\nreplay: off", map[string]string{"NEW": "new-secret", "OLD": "old-secret"}, 1, nil)
	for _, key := range []string{"new-secret", "old-secret"} {
		h := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex(key, body)}
		if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.OK {
			t.Errorf("Verify(signed with %s) = %v; want allowed", key, code)
		}
	}
}

func TestStandardWebhooksEd25519AndSeveralSignatures(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const now = 1700000000
	id, ts, body := "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", fmt.Sprint(now), `{"type":"user.created"}`
	sig := ed25519.Sign(priv, []byte(id+"."+ts+"."+body))
	cfg := fmt.Sprintf("name: std\nscheme: standard\npublicKeys: [whpk_%s]\nreplay: off", base64.StdEncoding.EncodeToString(pub))
	v := newVerifier(t, cfg, nil, now, nil)
	h := map[string]string{
		"webhook-id": id, "webhook-timestamp": ts,
		"webhook-signature": "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32)) + " v1a," + base64.StdEncoding.EncodeToString(sig),
	}
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.OK {
		t.Fatalf("Verify(v1a among several) = %v; want allowed", code)
	}
	h["webhook-id"] = "msg_other"
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookSignatureInvalid {
		t.Errorf("Verify(v1a, other id) = %v; want webhook_signature_invalid", code)
	}
	h["webhook-signature"] = "v1a,@@@"
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookSignatureMalformed {
		t.Errorf("Verify(v1a not base64) = %v; want webhook_signature_malformed", code)
	}
}

func TestGenericHMAC(t *testing.T) {
	const now = 1700000000
	body := `{"a":1}`
	content := "d-42." + fmt.Sprint(now) + "." + body
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte(content))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	cfg := `name: acme
scheme: hmac
secrets: [env:K]
replay: id
hmac:
  header: x-acme-signature
  encoding: base64
  prefix: "v1="
  timestampHeader: x-acme-timestamp
  idHeader: x-acme-delivery
  template: "{id}.{timestamp}.{body}"`
	v := newVerifier(t, cfg, map[string]string{"K": "k"}, now, kv.NewMemory(0))
	h := map[string]string{"x-acme-signature": "v1=" + sig, "x-acme-timestamp": fmt.Sprint(now), "x-acme-delivery": "d-42"}
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.OK {
		t.Fatalf("Verify(generic) = %v; want allowed", code)
	}
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookReplayed {
		t.Errorf("Verify(generic, same delivery id again) = %v; want webhook_replayed", code)
	}
	h["x-acme-signature"] = sig
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookSignatureMalformed {
		t.Errorf("Verify(generic without prefix) = %v; want webhook_signature_malformed", code)
	}
}

// TestGenericHMACSignatureList: with a separator the generic header lists
// signatures, one per active secret during a rotation; elements of
// another prefix (another version or algorithm) are skipped.
func TestGenericHMACSignatureList(t *testing.T) {
	body := `{"a":1}`
	good, other := "v1="+hmacHex("k", body), "v1="+hmacHex("retired", body)
	cfg := "name: acme\nscheme: hmac\nsecrets: [env:K]\nreplay: off\nhmac: {header: x-sig, prefix: \"v1=\", separator: \"%s\"}"
	tests := []struct {
		name, sep, header string
		want              core.Code
	}{
		{"one signature", " ", good, core.OK},
		{"the new of two", " ", other + " " + good, core.OK},
		{"the old of two", " ", good + " " + other, core.OK},
		{"spaces around", " ", "  " + other + "   " + good + " ", core.OK},
		{"another version skipped", " ", "v2=" + strings.Repeat("ab", 40) + " " + good, core.OK},
		{"only another version", " ", "v2=" + hmacHex("k", body), core.WebhookSignatureMalformed},
		{"none of them verifies", " ", other + " " + other, core.WebhookSignatureInvalid},
		{"a listed signature that is not hex", " ", "v1=zz " + good, core.WebhookSignatureMalformed},
		{"a listed prefix with nothing", " ", "v1= " + good, core.WebhookSignatureMalformed},
		{"too many", " ", strings.Repeat(other+" ", maxListed) + good, core.WebhookSignatureMalformed},
		{"empty header", " ", "", core.WebhookSignatureMalformed},
		{"comma list", ",", other + ", " + good, core.OK},
		// Envoy joins a header sent twice with ","; with "," as the
		// separator that is the same list.
		{"header sent twice", ",", other + "," + good, core.OK},
		{"comma in a space list", " ", other + "," + good, core.WebhookSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, fmt.Sprintf(cfg, tt.sep), map[string]string{"K": "k"}, 1, nil)
			if _, got := v.Verify(context.Background(), req(map[string]string{"x-sig": tt.header}, body), nil); got != tt.want {
				t.Errorf("Verify(%q) = %v; want %v", tt.header, got, tt.want)
			}
		})
	}
	// Without a separator the header is one signature, as before.
	v := newVerifier(t, "name: acme\nscheme: hmac\nsecrets: [env:K]\nreplay: off\nhmac: {header: x-sig, prefix: \"v1=\"}", map[string]string{"K": "k"}, 1, nil)
	if _, got := v.Verify(context.Background(), req(map[string]string{"x-sig": other + " " + good}, body), nil); got != core.WebhookSignatureMalformed {
		t.Errorf("Verify(two signatures, no separator) = %v; want webhook_signature_malformed", got)
	}
}

// TestGenericHMACListReplay: a replay that keeps only one of the listed
// signatures is the same delivery.
func TestGenericHMACListReplay(t *testing.T) {
	body := `{"a":1}`
	a, b := "sha256="+hmacHex("new", body), "sha256="+hmacHex("old", body)
	v := newVerifier(t, "name: acme\nscheme: hmac\nsecrets: [env:NEW, env:OLD]\nhmac: {header: x-sig, prefix: \"sha256=\", separator: \",\"}", map[string]string{"NEW": "new", "OLD": "old"}, 1, kv.NewMemory(0))
	if _, code := v.Verify(context.Background(), req(map[string]string{"x-sig": a + "," + b}, body), nil); code != core.OK {
		t.Fatalf("Verify(both signatures) = %v; want allowed", code)
	}
	for _, h := range []string{b, a} {
		if _, code := v.Verify(context.Background(), req(map[string]string{"x-sig": h}, body), nil); code != core.WebhookReplayed {
			t.Errorf("Verify(replay with one signature) = %v; want webhook_replayed", code)
		}
	}
}

// svixSign is a Svix (Standard Webhooks) v1 signature of one delivery.
func svixSign(secret, id, ts, body string) string {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// TestSvix: the Standard Webhooks scheme under svix-* headers: any one of
// several space-separated signatures verifies (rotation), the timestamp
// is checked, and replay: id refuses a delivery id seen before even when
// re-signed with a new timestamp.
func TestSvix(t *testing.T) {
	const now = 1700000000
	newSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-secret-0123456789"))
	oldSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-0123456789"))
	body, id, ts := `{"type":"invoice.paid"}`, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", fmt.Sprint(now)
	both := svixSign(oldSecret, id, ts, body) + " " + svixSign(newSecret, id, ts, body)
	v := newVerifier(t, "name: sx\nscheme: svix\nsecrets: [env:S]\nreplay: id", map[string]string{"S": newSecret}, now, kv.NewMemory(0))
	h := map[string]string{"svix-id": id, "svix-timestamp": ts, "svix-signature": both}
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.OK {
		t.Fatalf("Verify(old and new signature) = %v; want allowed", code)
	}
	later := fmt.Sprint(now + 60)
	retry := map[string]string{"svix-id": id, "svix-timestamp": later, "svix-signature": svixSign(newSecret, id, later, body)}
	if _, code := v.Verify(context.Background(), req(retry, body), nil); code != core.WebhookReplayed {
		t.Errorf("Verify(same svix-id, new timestamp) = %v; want webhook_replayed", code)
	}
	stale := fmt.Sprint(now - 3600)
	old := map[string]string{"svix-id": "msg_other", "svix-timestamp": stale, "svix-signature": svixSign(newSecret, "msg_other", stale, body)}
	if _, code := v.Verify(context.Background(), req(old, body), nil); code != core.WebhookTimestampStale {
		t.Errorf("Verify(an hour old) = %v; want webhook_timestamp_stale", code)
	}
	std := map[string]string{"webhook-id": id, "webhook-timestamp": ts, "webhook-signature": both}
	if _, code := v.Verify(context.Background(), req(std, body), nil); code != core.WebhookSignatureMissing {
		t.Errorf("Verify(webhook-* headers to the svix scheme) = %v; want webhook_signature_missing", code)
	}
	onlyOld := map[string]string{"svix-id": "msg_3", "svix-timestamp": ts, "svix-signature": svixSign(oldSecret, "msg_3", ts, body)}
	if _, code := v.Verify(context.Background(), req(onlyOld, body), nil); code != core.WebhookSignatureInvalid {
		t.Errorf("Verify(signed with a retired secret only) = %v; want webhook_signature_invalid", code)
	}
}

func TestReplayGuard(t *testing.T) {
	body := "x"
	h := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("s", body)}
	v := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, kv.NewMemory(0))
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.OK {
		t.Fatalf("first delivery = %v; want allowed", code)
	}
	if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookReplayed {
		t.Fatalf("same delivery again = %v; want webhook_replayed", code)
	}
	// A forged copy must not poison the guard for the real delivery.
	other := "y"
	forged := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("wrong", other)}
	if _, code := v.Verify(context.Background(), req(forged, other), nil); code != core.WebhookSignatureInvalid {
		t.Fatalf("forged = %v; want webhook_signature_invalid", code)
	}
	real := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("s", other)}
	if _, code := v.Verify(context.Background(), req(real, other), nil); code != core.OK {
		t.Fatalf("real delivery after a forged one = %v; want allowed", code)
	}
}

// TestReplayGuardSeveralSignatures: during a secret rotation a sender
// signs each delivery with every active secret (Stripe sends one v1= per
// secret, Standard Webhooks one v1, per secret). A replay that keeps only
// one of those signatures is the same delivery and must be refused.
func TestReplayGuardSeveralSignatures(t *testing.T) {
	const now = 1700000000
	ts, body := fmt.Sprint(now), `{"id":"evt_1"}`
	newSig, oldSig := hmacHex("new-secret", ts+"."+body), hmacHex("old-secret", ts+"."+body)
	v := newVerifier(t, "name: stripe\nscheme: stripe\nsecrets: [env:NEW, env:OLD]", map[string]string{"NEW": "new-secret", "OLD": "old-secret"}, now, kv.NewMemory(0))
	both := map[string]string{"stripe-signature": "t=" + ts + ",v1=" + newSig + ",v1=" + oldSig}
	if _, code := v.Verify(context.Background(), req(both, body), nil); code != core.OK {
		t.Fatalf("Verify(delivery signed with both secrets) = %v; want allowed", code)
	}
	for _, sig := range []string{oldSig, newSig} {
		h := map[string]string{"stripe-signature": "t=" + ts + ",v1=" + sig}
		if _, code := v.Verify(context.Background(), req(h, body), nil); code != core.WebhookReplayed {
			t.Errorf("Verify(same delivery replayed with one of its signatures) = %v; want webhook_replayed", code)
		}
	}
}

// TestReplayGuardSharedInRedis: two verifiers (two replicas) on one real
// Redis refuse a delivery the other accepted.
func TestReplayGuardSharedInRedis(t *testing.T) {
	client := testenv.Redis(t)
	prefix := testenv.KeyPrefix(t)
	body := "shared"
	h := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("s", body)}
	a := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, kv.NewRedis(client, prefix))
	b := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, kv.NewRedis(client, prefix))
	if _, code := a.Verify(context.Background(), req(h, body), nil); code != core.OK {
		t.Fatalf("replica a = %v; want allowed", code)
	}
	if _, code := b.Verify(context.Background(), req(h, body), nil); code != core.WebhookReplayed {
		t.Fatalf("replica b, same delivery = %v; want webhook_replayed", code)
	}
}

type downStore struct{ kv.Store }

func (downStore) SetNX(context.Context, string, []byte, time.Duration) (bool, error) {
	return false, errors.Join(kv.ErrUnavailable, errors.New("connection refused"))
}

func TestReplayStoreDown(t *testing.T) {
	body := "x"
	h := map[string]string{"x-hub-signature-256": "sha256=" + hmacHex("s", body)}
	for _, tt := range []struct {
		mode string
		want core.Code
	}{{"closed", core.ReplayStoreUnavailable}, {"open", core.OK}} {
		v := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:S]\nreplayFailureMode: "+tt.mode, map[string]string{"S": "s"}, 1, downStore{})
		if _, code := v.Verify(context.Background(), req(h, body), nil); code != tt.want {
			t.Errorf("Verify(store down, failure mode %s) = %v; want %v", tt.mode, code, tt.want)
		}
		if v.StoreErrors() != 1 {
			t.Errorf("StoreErrors() = %d; want 1", v.StoreErrors())
		}
	}
}

func TestStandardSecretMustDecode(t *testing.T) {
	_, err := New(source(t, "name: std\nscheme: standard\nsecrets: [env:S]", map[string]string{"S": "whsec_%%%"}), Options{})
	if err == nil || !strings.Contains(err.Error(), "Standard Webhooks secret") {
		t.Errorf("New(bad whsec) = %v; want an error about the secret", err)
	}
}

// FuzzSignatureHeaders feeds arbitrary signature headers to every scheme:
// none may panic, and none may verify without the secret (GitLab's token
// is the secret: it verifies exactly when the header is the secret).
func FuzzSignatureHeaders(f *testing.F) {
	for _, vec := range loadVectors(f) {
		for _, v := range vec.Headers {
			f.Add(v, vec.Body)
		}
	}
	f.Add("t=1,v1=,v1=zz,,=", "")
	f.Add("v1, v1a,=== v2,abc", "{}")
	f.Add("fuzz-secret", "")
	schemes := []string{"github", "stripe", "slack", "standard", "shopify", "svix", "twilio", "gitlab", "hmac"}
	vs := make([]*Verifier, len(schemes))
	for i, s := range schemes {
		secret := "fuzz-secret"
		if s == "standard" || s == "svix" {
			secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123"))
		}
		cfg := "name: f\nscheme: " + s + "\nsecrets: [env:S]\nreplay: off"
		if s == "hmac" {
			cfg += "\nhmac: {header: x-sig, encoding: base64, prefix: \"v1,\", separator: \" \", timestampHeader: webhook-timestamp, template: \"{timestamp}.{body}\"}"
		}
		vs[i] = newVerifier(f, cfg, map[string]string{"S": secret}, 1, nil)
	}
	f.Fuzz(func(t *testing.T, header, body string) {
		for _, v := range vs {
			h := map[string]string{}
			for _, name := range []string{HeaderGitHubSignature, HeaderStripeSignature, HeaderSlackSignature, HeaderSlackTimestamp,
				HeaderStandardSignature, HeaderStandardID, HeaderStandardTimestamp, HeaderShopifySignature,
				HeaderSvixSignature, HeaderSvixID, HeaderSvixTimestamp, HeaderTwilioSignature, HeaderGitLabToken, "x-sig", "content-type"} {
				h[name] = header
			}
			_, code := v.Verify(context.Background(), req(h, body), nil)
			if want := v.scheme == config.SchemeGitLab && header == "fuzz-secret"; (code == core.OK) != want {
				t.Fatalf("%s: Verify(fuzzed header %q) = %v; want allowed: %t", v.scheme, header, code, want)
			}
		}
	})
}

// FuzzSignatureList feeds arbitrary lists and separators (even those the
// config refuses) to the generic scheme's splitter: no panic, never more
// than maxListed signatures, each decoded from an element with the prefix.
func FuzzSignatureList(f *testing.F) {
	f.Add("v1=00ff v1=abcd", " ")
	f.Add("v1=00ff,, v2=zz ,v1=", ",")
	f.Add("   ", " ")
	f.Add(strings.Repeat("v1=00 ", 70), " ")
	f.Add("v1=00;v1=11", ";")
	f.Fuzz(func(t *testing.T, header, sep string) {
		if sep == "" {
			return // no separator: the header is one signature, not a list
		}
		g := &config.GenericHMAC{Header: "x-sig", Prefix: "v1=", Encoding: "hex", Separator: sep}
		sigs, problem := splitSignatures(header, g)
		if problem == "" && (len(sigs) == 0 || len(sigs) > maxListed) {
			t.Fatalf("splitSignatures(%q, %q) = %d signatures", header, sep, len(sigs))
		}
		if problem != "" && sigs != nil {
			t.Fatalf("splitSignatures(%q, %q) = signatures and problem %q", header, sep, problem)
		}
		for _, s := range sigs {
			if !strings.Contains(strings.ToLower(header), "v1="+hex.EncodeToString(s)) {
				t.Fatalf("splitSignatures(%q, %q) returned %x, which no element holds", header, sep, s)
			}
		}
	})
}
