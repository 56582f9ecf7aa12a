package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// BenchmarkCheck measures one Check as Envoy sends it, without gRPC:
// the hot path of a cached token, a token verified for the first time
// (an RS256 signature check each), an API key and a signed webhook.
func BenchmarkCheck(b *testing.B) {
	s, _, _ := newServer(b, testConfig(b), nil)
	// The real audit writer buffers through a channel; the test recorder
	// keeps every event, which would be what this measures.
	s.deps.Audit = discard{}
	ctx := context.Background()
	run := func(b *testing.B, reqs []*authv3.CheckRequest, wantOK bool) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resp, _ := s.Check(ctx, reqs[i%len(reqs)])
			if (resp.GetStatus().GetCode() == 0) != wantOK {
				b.Fatalf("Check = %v", resp.GetDeniedResponse().GetBody())
			}
		}
	}
	hot := make([]*authv3.CheckRequest, 1000)
	for i := range hot {
		hot[i] = check{route: "orders", path: "/orders", headers: map[string]string{"authorization": "Bearer " + token(b, map[string]any{"sub": fmt.Sprintf("user-%d", i)})}}.request()
		_, _ = s.Check(ctx, hot[i]) // warm the cache
	}
	b.Run("jwt-cached", func(b *testing.B) { run(b, hot, true) })
	b.Run("jwt-uncached", func(b *testing.B) {
		// The same tokens with the cache off: an RS256 verification each.
		nc, _, _ := newServer(b, strings.Replace(testConfig(b), "  jwt:\n    issuers:", "  jwt:\n    cacheSize: 0\n    issuers:", 1), nil)
		nc.deps.Audit = discard{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if resp, _ := nc.Check(ctx, hot[i%len(hot)]); resp.GetStatus().GetCode() != 0 {
				b.Fatalf("Check = %v", resp.GetDeniedResponse().GetBody())
			}
		}
		if v := nc.engine.Load().jwt.Stats().Verifications; v < uint64(b.N) {
			b.Fatalf("%d verifications for %d Checks; want one each", v, b.N)
		}
	})
	b.Run("apikey", func(b *testing.B) {
		run(b, []*authv3.CheckRequest{check{route: "orders", path: "/orders", headers: map[string]string{"x-api-key": "live-key"}}.request()}, true)
	})
	b.Run("webhook", func(b *testing.B) {
		body := `{"action":"opened","number":1347,"pull_request":{"title":"` + strings.Repeat("x", 600) + `"}}`
		reqs := make([]*authv3.CheckRequest, b.N)
		for i := range reqs {
			// A distinct body each time, as the replay guard would refuse
			// the same delivery twice.
			bd := fmt.Sprintf("%d-%d%s", b.N, i, body)
			m := hmac.New(sha256.New, []byte("gh-secret"))
			m.Write([]byte(bd))
			reqs[i] = check{route: "hook", method: "POST", path: "/hook", body: bd, headers: map[string]string{"x-hub-signature-256": "sha256=" + hex.EncodeToString(m.Sum(nil))}}.request()
		}
		run(b, reqs, true)
	})
	b.Run("deny-no-credentials", func(b *testing.B) {
		run(b, []*authv3.CheckRequest{check{route: "orders", path: "/orders"}.request()}, false)
	})
}
