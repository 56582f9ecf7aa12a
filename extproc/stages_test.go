package extproc

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

const stagesConfig = `
extproc: {}
routes:
  - id: orders
    match: {prefix: /orders}
    extproc:
      hygiene: {}
      idempotency: {}
      json: {trailingData: allow}
      openapi:
        spec: |
          openapi: 3.0.3
          info: {title: t, version: "1"}
          paths:
            /orders:
              post:
                requestBody:
                  required: true
                  content:
                    application/json:
                      schema: {type: object, required: [sku], properties: {sku: {type: string}}}
                responses: {"201": {description: created}}
`

// exchangeStage is exchange for a stream opened by one stage's filter.
func exchangeStage(t testing.TB, s *Server, st config.ExtProcStage, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	str := s.newStream()
	str.stage = st
	var out []*extprocv3.ProcessingResponse
	var err error
	defer func() { str.finish(err) }()
	for _, m := range msgs {
		var resp *extprocv3.ProcessingResponse
		if resp, err = str.handle(context.Background(), m); err != nil {
			t.Fatalf("stage %q: stream error: %v", st, err)
		}
		if resp != nil {
			if verr := resp.ValidateAll(); verr != nil {
				t.Errorf("answer to %T fails Envoy's validation: %v", m.Request, verr)
			}
			out = append(out, resp)
		}
		if str.done {
			break
		}
	}
	return out
}

// verifiedAs adds ext_authz's dynamic metadata, as the post_authz filter
// forwards it, to a stream's first message.
func verifiedAs(req *extprocv3.ProcessingRequest, subject string) *extprocv3.ProcessingRequest {
	req.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{contract.AuthzFilterName: {Fields: map[string]*structpb.Value{
		contract.MetaSubject:    structpb.NewStringValue(subject),
		contract.MetaIssuer:     structpb.NewStringValue("https://issuer.example"),
		contract.MetaAuthMethod: structpb.NewStringValue(contract.AuthMethodJWT),
	}}}}
	return req
}

func orderPost(key, auth string) *extprocv3.ProcessingRequest {
	return requestHeaders("orders", false, buffered, ":authority", "api", ":path", "/orders", ":method", "POST",
		"content-type", "application/json", "idempotency-key", key, "authorization", auth,
		"x-request-id", "0f6c1a52-9e0b-4c57-8a8f-3b4f2ad0c0de", "x-gatehouse-subject", "alice")
}

// TestStagesSplitProcessors: the pre_authz stage runs hygiene alone (and
// asks for no body: nothing before ext_authz reads one), the post_authz
// stage the contract and idempotency alone, and keeps the identity
// headers ext_authz set, which hygiene in the first stage would strip.
func TestStagesSplitProcessors(t *testing.T) {
	s, _ := testServer(t, testConfig(t, stagesConfig), component.Deps{})

	pre := exchangeStage(t, s, config.ExtProcStagePreAuthz, orderPost("k1", "Bearer a"))
	if len(pre) != 1 || pre[0].GetRequestHeaders() == nil {
		t.Fatalf("pre_authz answers %v; want one request headers answer (no body asked for)", pre)
	}
	m := mut(pre[0])
	if !strings.Contains(strings.Join(m.GetRemoveHeaders(), ","), contract.HeaderSubject) {
		t.Errorf("pre_authz removes %v; want the client's %s stripped", m.GetRemoveHeaders(), contract.HeaderSubject)
	}
	if _, ok := setHeaders(m)["traceparent"]; !ok {
		t.Errorf("pre_authz sets %v; want a traceparent", setHeaders(m))
	}
	if mo := pre[0].GetModeOverride(); mo.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_NONE || mo.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SEND {
		t.Errorf("pre_authz mode override = %v; want no body, response headers (security headers)", mo)
	}

	post := exchangeStage(t, s, config.ExtProcStagePostAuthz, orderPost("k1", "Bearer a"), requestBody(`{"nope":1}`, true))
	if len(post) != 2 {
		t.Fatalf("post_authz answers %v; want headers then the contract's 400", post)
	}
	if rm := mut(post[0]).GetRemoveHeaders(); len(rm) != 0 {
		t.Errorf("post_authz removes %v; want ext_authz's identity headers kept", rm)
	}
	code, p := problemOf(t, post[1])
	if code != 400 || p.Type != problemContract {
		t.Fatalf("post_authz on an invalid body = %d %+v; want the contract's 400", code, p)
	}
	// Its own answers carry the ids the first stage set on the request.
	if got := setHeaders(post[1].GetImmediateResponse().GetHeaders())["x-request-id"]; got != "0f6c1a52-9e0b-4c57-8a8f-3b4f2ad0c0de" {
		t.Errorf("the 400's x-request-id = %q; want the request's", got)
	}

	// A route's response headers: hygiene's in the first stage.
	pre = exchangeStage(t, s, config.ExtProcStagePreAuthz, orderPost("k2", "Bearer a"), responseHeaders(true, ":status", "200", "server", "x"))
	if got := setHeaders(mut(pre[1]))["x-content-type-options"]; got != "nosniff" || len(mut(pre[1]).GetRemoveHeaders()) == 0 {
		t.Errorf("pre_authz response answer = %v; want security headers set and server stripped", pre[1])
	}
}

// TestStagesIdempotencyScopedBySubject: behind ext_authz, keys are scoped
// by the verified caller: the same subject with a refreshed token gets its
// replay, another subject with the same key and the same token does not.
func TestStagesIdempotencyScopedBySubject(t *testing.T) {
	s, _ := testServer(t, testConfig(t, stagesConfig), component.Deps{})
	call := func(subject, auth string) []*extprocv3.ProcessingResponse {
		return exchangeStage(t, s, config.ExtProcStagePostAuthz, verifiedAs(orderPost("k1", auth), subject), requestBody(`{"sku":"a"}`, true),
			responseHeaders(false, ":status", "201", "content-type", "application/json"), responseBody(`{"id":7}`, true))
	}
	if got := call("alice", "Bearer token-1"); len(got) != 4 {
		t.Fatalf("first call answers %v; want it to run", got)
	}
	if got := call("alice", "Bearer token-2"); got[1].GetImmediateResponse() == nil || got[1].GetImmediateResponse().GetStatus().GetCode() != 201 {
		t.Errorf("same subject, refreshed token = %v; want the stored 201 replayed", got[1])
	}
	if got := call("bob", "Bearer token-1"); got[1].GetImmediateResponse() != nil {
		t.Errorf("another subject with alice's key and token = %v; want it to run, not alice's response", got[1])
	}
	// Unverified (no metadata): scoped by the credential as before, so
	// never in a verified caller's key space.
	got := exchangeStage(t, s, config.ExtProcStagePostAuthz, orderPost("k1", "Bearer token-1"), requestBody(`{"sku":"a"}`, true))
	if got[1].GetImmediateResponse() != nil {
		t.Errorf("unverified caller with alice's key and token = %v; want it to run", got[1])
	}
}

func TestStreamStage(t *testing.T) {
	for _, tc := range []struct {
		md      []string
		want    config.ExtProcStage
		wantErr string
	}{
		{md: nil, want: config.ExtProcStageAll},
		{md: []string{contract.ExtProcStageMetadata, "pre_authz"}, want: config.ExtProcStagePreAuthz},
		{md: []string{contract.ExtProcStageMetadata, "post_authz"}, want: config.ExtProcStagePostAuthz},
		{md: []string{contract.ExtProcStageMetadata, "before"}, wantErr: `unknown stage "before"`},
		{md: []string{contract.ExtProcStageMetadata, "pre_authz", contract.ExtProcStageMetadata, "post_authz"}, wantErr: "2 values"},
	} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tc.md...))
		got, err := streamStage(ctx)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("streamStage(%v) = %q, %v; want error %q", tc.md, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("streamStage(%v) = %q, %v; want %q", tc.md, got, err, tc.want)
		}
	}
}

// TestStagesKeepJSONRules: the post_authz stage reads bodies with the
// route's JSON rules, not the strict defaults.
func TestStagesKeepJSONRules(t *testing.T) {
	s, _ := testServer(t, testConfig(t, strictConfig), component.Deps{})
	body := `{"name":"Rex","status":"sold"} {"x":1}`
	out := exchangeStage(t, s, config.ExtProcStagePostAuthz, requestHeaders("legacy", false, buffered, postPets("legacy", "/legacy/pets")...), requestBody(body, true))
	if out[len(out)-1].GetRequestBody() == nil {
		t.Errorf("post_authz on the relaxed route = %v; want the body through", out[len(out)-1])
	}
	out = exchangeStage(t, s, config.ExtProcStagePostAuthz, requestHeaders("pets", false, buffered, postPets("pets", "/v1/pets")...), requestBody(body, true))
	if code, _ := problemOf(t, out[len(out)-1]); code != 400 {
		t.Errorf("post_authz on the strict route = %d; want 400", code)
	}
}

// TestStageViewsCopyEveryField: a stage's view of a route is built field
// by field (a route holds an atomic, so it cannot be copied whole); a
// field added to route later must reach the views, or be cleared here
// on purpose.
func TestStageViewsCopyEveryField(t *testing.T) {
	s, _ := testServer(t, testConfig(t, stagesConfig), component.Deps{})
	r := s.rt.Load().routes["orders"]
	cleared := map[string]map[string]bool{
		"pre":  {"contract": true, "oaBody": true, "oaResp": true, "redactor": true, "idem": true},
		"post": {"hygiene": true, "correlate": true},
	}
	own := map[string]bool{"needs": true, "pre": true, "post": true, "lastLog": true}
	for name, v := range map[string]*route{"pre": r.pre, "post": r.post} {
		rv, vv := reflect.ValueOf(r).Elem(), reflect.ValueOf(v).Elem()
		for i := range rv.NumField() {
			f := rv.Type().Field(i).Name
			if own[f] || cleared[name][f] {
				continue
			}
			if got, want := fmt.Sprint(vv.Field(i)), fmt.Sprint(rv.Field(i)); got != want {
				t.Errorf("%s view: route.%s = %s; want the route's %s (copy it in stageViews, or clear it on purpose)", name, f, got, want)
			}
		}
	}
}
