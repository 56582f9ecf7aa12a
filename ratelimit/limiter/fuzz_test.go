package limiter

import (
	"context"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const fuzzYAML = `apiVersion: gatehouse/v1
ratelimit:
  envoyConfigs: [testdata/envoy.yaml]
  tiers:
    gold:
      - {requests: 2, per: second}
      - {requests: 5, per: "5 minutes", algorithm: sliding}
      - {requests: 3, per: second, algorithm: gcra, burst: 2}
      - {requests: 100, per: month, calendar: true}
  default:
    - {requests: 1, per: minute}
routes:
  - id: orders
    match: {prefix: /}
    ratelimit:
      keyBy: tenant
      headers: [{header: x-tenant, key: tenant}]
`

// FuzzShouldRateLimit feeds arbitrary RLS requests (any bytes that decode
// as one) to the limiter: it must answer a valid response or an
// InvalidArgument error, never panic or hang.
func FuzzShouldRateLimit(f *testing.F) {
	seeds := []*rlsv3.RateLimitRequest{
		{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("route", "orders", "tier", "gold", "subject", "a", "tenant", "t")}}},
		{Domain: "gatehouse", HitsAddend: 3, Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("route", "orders", "tier", "x")}, {Entries: entries("route", "nope")}}},
		{Domain: "shop", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("user", "u")}, {Entries: entries("vip", "1")}, {Entries: entries("path", "/api/x")}}},
		{Domain: "shop", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("tenant", "a", "user", "b"), HitsAddend: wrapperspb.UInt64(0)}, {Entries: entries("free", "x")}, {Entries: entries("q", "z")}}},
		{Domain: "shop", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("user", "u"), Limit: &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_SECOND}}}},
		{Domain: "shop", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("user", "u"), HitsAddend: wrapperspb.UInt64(2), IsNegativeHits: true}}},
		{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("route", "orders", "tier", "gold", "subject", "a"), HitsAddend: wrapperspb.UInt64(9), IsNegativeHits: true}}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// gatehouse's own mode, and reference mode with everything on.
	fxs := []*fixture{newFixture(f, fuzzYAML), newFixture(f, strings.Replace(fuzzYAML, "ratelimit:\n", "ratelimit:\n  reference: {responseHeaders: {enabled: true}, dynamicMetadata: true, quotaMode: true}\n", 1))}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &rlsv3.RateLimitRequest{}
		if proto.Unmarshal(data, req) != nil {
			return
		}
		for _, fx := range fxs {
			fuzzOne(t, fx, req)
		}
	})
}

func fuzzOne(t *testing.T, fx *fixture, req *rlsv3.RateLimitRequest) {
	{
		fx.now += 7_919 // time moves on, across windows now and then
		resp, err := fx.lim.ShouldRateLimit(context.Background(), req)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("ShouldRateLimit error %v; want only InvalidArgument", err)
			}
			return
		}
		if len(resp.GetStatuses()) != len(req.GetDescriptors()) {
			t.Fatalf("%d statuses for %d descriptors", len(resp.GetStatuses()), len(req.GetDescriptors()))
		}
		if err := resp.ValidateAll(); err != nil {
			t.Fatalf("response fails Envoy's validation: %v", err)
		}
		over := false
		for _, s := range resp.GetStatuses() {
			over = over || s.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if over != (resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT) {
			t.Fatalf("overall %v does not follow the statuses %v", resp.GetOverallCode(), resp.GetStatuses())
		}
	}
}
