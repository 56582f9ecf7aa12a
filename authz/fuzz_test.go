package authz

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzCheck decodes arbitrary bytes as a CheckRequest and decides it:
// whatever arrives, Check answers with a valid response and never panics,
// and nothing forged is allowed on a route that needs a credential.
func FuzzCheck(f *testing.F) {
	s, _, _ := newServer(f, testConfig(f), nil)
	s.deps.Audit = discard{}
	for _, c := range []check{
		{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer " + token(f, nil)}},
		{route: "internal", path: "/internal", headers: map[string]string{"x-forwarded-client-cert": `By=spiffe://a/b;URI=spiffe://example.org/x`}},
		{route: "hook", method: "POST", path: "/hook", body: "{}", headers: map[string]string{"x-hub-signature-256": "sha256=00"}},
		{path: "/status"},
	} {
		b, err := proto.Marshal(c.request())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return
		}
		resp, err := s.Check(context.Background(), &req)
		if err != nil || resp == nil {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not encode: %v", err)
		}
		route := req.GetAttributes().GetContextExtensions()["route"]
		if resp.GetStatus().GetCode() == 0 && (route == "admin" || route == "internal" || route == "hook") {
			t.Fatalf("a fuzzed request was allowed on route %q", route)
		}
	})
}
