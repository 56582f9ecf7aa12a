package limiter

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// t0 is a fixed clock: 2024-03-01 10:00:00.25 UTC, a quarter into a second.
const t0 = int64(1709287200_250_000)

type fixture struct {
	lim   *Limiter
	reg   *prometheus.Registry
	store *countingStore
	now   int64
}

// countingStore wraps a store, counts round trips and can fail.
type countingStore struct {
	store.Store
	evals atomic.Int64
	fail  atomic.Bool
}

func (c *countingStore) Eval(ctx context.Context, ops []*store.Op) error {
	c.evals.Add(1)
	if c.fail.Load() {
		return store.ErrUnavailable
	}
	return c.Store.Eval(ctx, ops)
}

func newFixture(t testing.TB, yaml string) *fixture {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: reg, store: &countingStore{Store: store.NewMemory(0)}, now: t0}
	f.lim = New(slog.New(slog.DiscardHandler), m, store.NewOverLimitCache(cfg.RateLimit.LocalCache.MaxEntries), "gh:")
	f.lim.Now = func() int64 { return f.now }
	f.lim.Swap(snap, f.store, SettingsFrom(cfg.RateLimit))
	return f
}

func entries(kv ...string) []*ratelimitv3.RateLimitDescriptor_Entry {
	var out []*ratelimitv3.RateLimitDescriptor_Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func rlReq(domain string, descs ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: descs}
}

func d(kv ...string) *ratelimitv3.RateLimitDescriptor {
	return &ratelimitv3.RateLimitDescriptor{Entries: entries(kv...)}
}

func (f *fixture) call(t *testing.T, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := f.lim.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v) error: %v", req, err)
	}
	return resp
}

const gatehouseYAML = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold:
      - {requests: 2, per: second}
      - {requests: 3, per: minute}
    anonymous:
      - {requests: 1, per: hour}
routes:
  - id: orders
    match: {prefix: /orders}
  - id: shadowed
    match: {prefix: /s}
    ratelimit: {shadow: true}
  - id: open
    match: {prefix: /o}
    ratelimit: {failureMode: open}
`

func gold(subject string) *ratelimitv3.RateLimitDescriptor {
	return d("route", "orders", "tier", "gold", "subject", subject)
}

func TestFirstAnswerHasStatusAndHeaders(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	got := f.call(t, rlReq("gatehouse", gold("alice")))
	want := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{{
			Code:               rlsv3.RateLimitResponse_OK,
			CurrentLimit:       &rlsv3.RateLimitResponse_RateLimit{Name: "gold-1s", RequestsPerUnit: 2, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND},
			LimitRemaining:     1,
			DurationUntilReset: &durationpb.Duration{Seconds: 1}, // 0.75s, rounded up
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValue{
			{Key: "ratelimit-policy", Value: `"gold-1s";q=2;w=1, "gold-1m";q=3;w=60`},
			{Key: "ratelimit", Value: `"gold-1s";r=1;t=1`},
			{Key: "x-ratelimit-limit", Value: "2"},
			{Key: "x-ratelimit-remaining", Value: "1"},
			{Key: "x-ratelimit-reset", Value: "1"},
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("ShouldRateLimit mismatch (-want +got):\n%s", diff)
	}
}

// TestMultipleLimitsAllOrNothing: a request refused by the per-second limit
// does not use up the per-minute one.
func TestMultipleLimitsAllOrNothing(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	var codes []string
	for i := 0; i < 5; i++ { // 2 OK, then refused by 2/second
		codes = append(codes, f.call(t, rlReq("gatehouse", gold("bob"))).OverallCode.String())
	}
	f.now += 1_000_000 // next second: the minute has 1 left, not 0
	r := f.call(t, rlReq("gatehouse", gold("bob")))
	codes = append(codes, r.OverallCode.String())
	r = f.call(t, rlReq("gatehouse", gold("bob")))
	codes = append(codes, r.OverallCode.String())
	want := "OK OK OVER_LIMIT OVER_LIMIT OVER_LIMIT OK OVER_LIMIT"
	if got := strings.Join(codes, " "); got != want {
		t.Fatalf("codes = %s; want %s", got, want)
	}
	if got := r.Statuses[0].CurrentLimit.GetName(); got != "gold-1m" {
		t.Errorf("refusal reports limit %q; want gold-1m (the minute is used up)", got)
	}
	hdr := map[string]string{}
	for _, h := range r.ResponseHeadersToAdd {
		hdr[h.Key] = h.Value
	}
	if hdr["retry-after"] != "59" || hdr["x-ratelimit-remaining"] != "0" {
		t.Errorf("headers = %v; want retry-after 59 (10:00:01.25 to 10:01), x-ratelimit-remaining 0", hdr)
	}
}

func TestHitsAddend(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	req := rlReq("gatehouse", gold("carol"))
	req.HitsAddend = 2
	if r := f.call(t, req); r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("2 hits of 2/second: %v", r)
	}
	// Check only (descriptor hits_addend 0): OK at exactly the limit.
	look := gold("carol")
	look.HitsAddend = wrapperspb.UInt64(0)
	if r := f.call(t, rlReq("gatehouse", look)); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("hits 0 at the limit: %v; want OK", r.OverallCode)
	}
	// The descriptor's hits_addend wins over the request's.
	f.now += 1_000_000
	big := gold("carol")
	big.HitsAddend = wrapperspb.UInt64(3)
	req = rlReq("gatehouse", big)
	req.HitsAddend = 1
	if r := f.call(t, req); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("3 hits of 2/second: %v; want OVER_LIMIT", r.OverallCode)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t, gatehouseYAML+`  - id: deep
    match: {prefix: /d}
`)
	long := strings.Repeat("x", 2000)
	many := &rlsv3.RateLimitRequest{Domain: "gatehouse"}
	for i := 0; i < 65; i++ {
		many.Descriptors = append(many.Descriptors, gold("a"))
	}
	tests := []struct {
		name string
		req  *rlsv3.RateLimitRequest
		want string
	}{
		{"empty domain", rlReq("", gold("a")), "domain is empty"},
		{"no descriptors", rlReq("gatehouse"), "the request has no descriptors"},
		{"too many descriptors", many, "the request has 65 descriptors; at most 64"},
		{"too many entries", rlReq("gatehouse", d(strings.Split(strings.Repeat("k,v,", 17), ",")...)), "descriptors[0] has 17 entries; at most 16"},
		{"value too long", rlReq("gatehouse", d("route", "orders", "subject", long)), "descriptors[0].entries[1] is longer than 1024 bytes"},
		{"hits too large", &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: entries("route", "orders"), HitsAddend: wrapperspb.UInt64(1 << 63)}}}, "descriptors[0].hits_addend 9223372036854775808 is more than 1000000"},
		{"request hits too large", &rlsv3.RateLimitRequest{Domain: "gatehouse", HitsAddend: 4_000_000_000, Descriptors: []*ratelimitv3.RateLimitDescriptor{gold("a")}}, "hits_addend 4000000000 is more than 1000000"},
		{"duplicate subject", rlReq("gatehouse", d("route", "orders", "tier", "gold", "subject", "a", "subject", "b")), `duplicate entry "subject"`},
		{"null descriptor", &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{nil}}, "descriptors[0] is null"},
		{"null entry", &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{nil}}}}, "descriptors[0].entries[0] is null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.lim.ShouldRateLimit(context.Background(), tt.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ShouldRateLimit = %v; want InvalidArgument %q", err, tt.want)
			}
		})
	}
}

func TestShadow(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	for i := 0; i < 4; i++ {
		r := f.call(t, rlReq("gatehouse", d("route", "shadowed", "tier", "gold", "subject", "s")))
		if r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("shadow request %d = %v; want OK", i, r.OverallCode)
		}
	}
	if n := testutil.ToFloat64(f.lim.m.decisions.WithLabelValues("gatehouse", "gatehouse/shadowed/gold", "shadow_over_limit")); n != 2 {
		t.Errorf("shadow_over_limit = %v; want 2", n)
	}
}

// failureModesYAML: the default failure modes (verified tiers open,
// anonymous closed) on "orders", one mode for every tier on "open" and
// "closed", per tier on "mixed", and a shadow route; ENVOY is the path of
// a directory of envoy config files with the domains "shop" (the default
// mode) and "strict" (closed).
const failureModesYAML = `apiVersion: gatehouse/v1
ratelimit:
  tiers:
    gold: [{requests: 2, per: second}]
    anonymous: [{requests: 1, per: hour}]
  default: [{requests: 5, per: second}]
  envoyConfigs: [ENVOY]
  domains: {strict: {failureMode: closed}}
routes:
  - {id: orders, match: {prefix: /orders}}
  - {id: open, match: {prefix: /o}, ratelimit: {failureMode: open}}
  - {id: closed, match: {prefix: /c}, ratelimit: {failureMode: closed}}
  - {id: mixed, match: {prefix: /m}, ratelimit: {failureMode: {default: closed, anonymous: open, tiers: {gold: open}}}}
  - {id: shadowed, match: {prefix: /s}, ratelimit: {shadow: true}}
`

// TestFailureModes: with the store down, each tier of each route answers
// by its failure mode — OK with the degraded-open mark for the upstream,
// or OVER_LIMIT with Retry-After and no mark — and the answer is counted
// by rule and decision, and by tier and mode. Recovery needs nothing but
// the store answering again.
func TestFailureModes(t *testing.T) {
	dir := t.TempDir()
	for _, dom := range []string{"shop", "strict"} {
		if err := os.WriteFile(filepath.Join(dir, dom+".yaml"), []byte("domain: "+dom+"\ndescriptors:\n  - key: user\n    rate_limit: {unit: minute, requests_per_unit: 5}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, strings.Replace(failureModesYAML, "ENVOY", dir, 1))
	f.store.fail.Store(true)
	tests := []struct {
		name string
		req  *rlsv3.RateLimitRequest
		ok   bool
		rule string // the rule's ID, metered with decision
		dec  string
		tier string // metered in gatehouse_ratelimit_degraded_total with mode
		mode string
	}{
		{"verified tier, default modes", rlReq("gatehouse", gold("x")), true, "gatehouse/orders/gold", "degraded_open", "gold", "open"},
		{"tier of the default limits", rlReq("gatehouse", d("route", "orders", "tier", "bronze", "subject", "x")), true, "gatehouse/orders/*", "degraded_open", "*", "open"},
		{"anonymous, default modes", rlReq("gatehouse", d("route", "orders", "tier", "anonymous", "subject", "10.0.0.1")), false, "gatehouse/orders/anonymous", "degraded_closed", "anonymous", "closed"},
		{"no tier entry is anonymous", rlReq("gatehouse", d("route", "orders", "subject", "10.0.0.1")), false, "gatehouse/orders/anonymous", "degraded_closed", "anonymous", "closed"},
		{"anonymous on an open route", rlReq("gatehouse", d("route", "open", "tier", "anonymous", "subject", "x")), true, "gatehouse/open/anonymous", "degraded_open", "anonymous", "open"},
		{"verified on a closed route", rlReq("gatehouse", d("route", "closed", "tier", "gold", "subject", "x")), false, "gatehouse/closed/gold", "degraded_closed", "gold", "closed"},
		{"default-limit tier on a closed route", rlReq("gatehouse", d("route", "closed", "tier", "bronze", "subject", "x")), false, "gatehouse/closed/*", "degraded_closed", "*", "closed"},
		{"route default closed", rlReq("gatehouse", d("route", "mixed", "tier", "bronze", "subject", "x")), false, "gatehouse/mixed/*", "degraded_closed", "*", "closed"},
		{"route tier open", rlReq("gatehouse", d("route", "mixed", "tier", "gold", "subject", "x")), true, "gatehouse/mixed/gold", "degraded_open", "gold", "open"},
		{"route anonymous open", rlReq("gatehouse", d("route", "mixed", "subject", "x")), true, "gatehouse/mixed/anonymous", "degraded_open", "anonymous", "open"},
		// A shadow rule answers OK, but a degraded answer is metered as
		// one, not as a refusal the shadow rule would have made.
		{"anonymous on a shadow route", rlReq("gatehouse", d("route", "shadowed", "subject", "x")), true, "gatehouse/shadowed/anonymous", "degraded_closed", "anonymous", "closed"},
		{"envoy config domain: failureMode.default", rlReq("shop", d("user", "x")), true, "shop.user", "degraded_open", "", "open"},
		{"envoy config domain closed", rlReq("strict", d("user", "x")), false, "strict.user", "degraded_closed", "", "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := testutil.ToFloat64(f.lim.m.decisions.WithLabelValues(tt.req.Domain, tt.rule, tt.dec))
			deg := testutil.ToFloat64(f.lim.m.degraded.WithLabelValues(tt.req.Domain, tt.tier, tt.mode))
			r := f.call(t, tt.req)
			hdr := map[string]string{}
			for _, h := range r.ResponseHeadersToAdd {
				hdr[h.Key] = h.Value
			}
			up := map[string]string{}
			for _, h := range r.RequestHeadersToAdd {
				up[h.Key] = h.Value
			}
			if tt.ok {
				if r.OverallCode != rlsv3.RateLimitResponse_OK || len(up) != 1 || up["x-gatehouse-ratelimit"] != "degraded-open" || len(hdr) != 0 {
					t.Errorf("answer = %v, upstream headers %v, client headers %v; want OK, x-gatehouse-ratelimit: degraded-open for the upstream, nothing for the client", r.OverallCode, up, hdr)
				}
			} else {
				if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || len(up) != 0 || len(hdr) != 1 || hdr["retry-after"] != "1" {
					t.Errorf("answer = %v, upstream headers %v, client headers %v; want OVER_LIMIT with retry-after: 1 (breaker.openFor) only", r.OverallCode, up, hdr)
				}
			}
			if n := testutil.ToFloat64(f.lim.m.decisions.WithLabelValues(tt.req.Domain, tt.rule, tt.dec)) - dec; n != 1 {
				t.Errorf("decisions{rule=%q, decision=%q} grew by %v; want 1", tt.rule, tt.dec, n)
			}
			if n := testutil.ToFloat64(f.lim.m.degraded.WithLabelValues(tt.req.Domain, tt.tier, tt.mode)) - deg; n != 1 {
				t.Errorf("degraded{tier=%q, mode=%q} grew by %v; want 1", tt.tier, tt.mode, n)
			}
		})
	}
	// Recovery needs nothing but the store answering again, and a decided
	// answer carries no mark.
	f.store.fail.Store(false)
	for _, req := range []*rlsv3.RateLimitRequest{rlReq("gatehouse", gold("y")), rlReq("gatehouse", d("route", "orders", "subject", "10.0.0.2"))} {
		if r := f.call(t, req); r.OverallCode != rlsv3.RateLimitResponse_OK || len(r.RequestHeadersToAdd) != 0 {
			t.Errorf("after recovery: %v = %v, upstream headers %v; want OK without a mark", req.Descriptors, r.OverallCode, r.RequestHeadersToAdd)
		}
	}
}

// TestDegradedMarkOnlyWhenAdmitted: a request with a degraded-open
// descriptor and another that refuses is refused, and so carries no mark
// (nothing goes upstream); a refund answered without the store is marked.
func TestDegradedMarkOnlyWhenAdmitted(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	anon := d("route", "orders", "subject", "10.0.0.9")
	f.call(t, rlReq("gatehouse", anon)) // 1/hour used up: cached, refused without the store
	f.store.fail.Store(true)
	r := f.call(t, rlReq("gatehouse", gold("m"), anon))
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || len(r.RequestHeadersToAdd) != 0 {
		t.Errorf("degraded-open and over limit = %v, upstream headers %v; want OVER_LIMIT without a mark", r.OverallCode, r.RequestHeadersToAdd)
	}
	refund := gold("m")
	refund.IsNegativeHits = true
	r = f.call(t, rlReq("gatehouse", refund))
	if r.OverallCode != rlsv3.RateLimitResponse_OK || len(r.RequestHeadersToAdd) != 1 {
		t.Errorf("refund with the store down = %v, upstream headers %v; want OK with the mark", r.OverallCode, r.RequestHeadersToAdd)
	}
	if n := testutil.ToFloat64(f.lim.m.degraded.WithLabelValues("gatehouse", "gold", "open")); n != 2 {
		t.Errorf("degraded{tier=gold, mode=open} = %v; want 2", n)
	}
}

// TestLocalCache: once a key refuses every request, refusals are answered
// without a round trip until the window ends.
func TestLocalCache(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	anon := rlReq("gatehouse", d("route", "orders", "subject", "10.0.0.1"))
	f.call(t, anon) // 1/hour used up: the answer leaves 0, so the key is cached
	before := f.store.evals.Load()
	for i := 0; i < 10; i++ {
		if r := f.call(t, anon); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("refusal %d = %v", i, r.OverallCode)
		}
	}
	if n := f.store.evals.Load() - before; n != 0 {
		t.Errorf("%d round trips for 10 refusals; want 0", n)
	}
	if n := testutil.ToFloat64(f.lim.m.decisions.WithLabelValues("gatehouse", "gatehouse/orders/anonymous", "over_limit_local")); n != 10 {
		t.Errorf("over_limit_local = %v; want 10", n)
	}
	f.now += 3600_000_000 // next hour
	if r := f.call(t, anon); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("next window = %v; want OK", r.OverallCode)
	}
}

func TestEnvoyDomainSemantics(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rl.yaml")
	os.WriteFile(file, []byte(`domain: shop
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1, name: per_user}
  - key: vip
    rate_limit: {unit: minute, requests_per_unit: 100, replaces: [{name: per_user}]}
  - key: free
    rate_limit: {unlimited: true}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
`), 0o644)
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+file+"]}\n")
	// replaces: the vip limit replaces per_user, so the user's second
	// request is OK.
	for i := 0; i < 2; i++ {
		r := f.call(t, rlReq("shop", d("user", "u1"), d("vip", "yes")))
		if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].CurrentLimit != nil {
			t.Fatalf("replaced request %d = %v", i, r)
		}
	}
	r := f.call(t, rlReq("shop", d("free", "x")))
	if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].LimitRemaining != 1<<32-1 {
		t.Errorf("unlimited = %v", r)
	}
	f.call(t, rlReq("shop", d("quota", "q")))
	r = f.call(t, rlReq("shop", d("quota", "q"), d("user", "u2")))
	if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].Code != rlsv3.RateLimitResponse_OK {
		t.Errorf("quota mode over = %v; want OK", r)
	}
	// Envoy's limit override replaces the tree's limit.
	ov := d("user", "u3")
	ov.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_HOUR}
	var got []string
	for i := 0; i < 3; i++ {
		got = append(got, f.call(t, rlReq("shop", ov)).OverallCode.String())
	}
	if strings.Join(got, " ") != "OK OK OVER_LIMIT" {
		t.Errorf("override 2/hour: %v", got)
	}
	bad := d("user", "u4")
	bad.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2}
	if _, err := f.lim.ShouldRateLimit(context.Background(), rlReq("shop", bad)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("override without unit: %v; want InvalidArgument", err)
	}
}

// TestCountsRefusedLikeReference: in envoy domains refused hits count, as
// in envoyproxy/ratelimit, so a big refused request keeps the key over.
func TestCountsRefusedLikeReference(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rl.yaml")
	os.WriteFile(file, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 10}\n"), 0o644)
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+file+"], localCache: {maxEntries: 0}}\n")
	req := rlReq("d", d("k", "v"))
	req.HitsAddend = 8
	f.call(t, req) // 8
	req.HitsAddend = 5
	if r := f.call(t, req); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT { // 13 > 10
		t.Fatalf("13 of 10 = %v", r.OverallCode)
	}
	req.HitsAddend = 1
	if r := f.call(t, req); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT { // 14: the reference counts refused hits
		t.Fatalf("14 of 10 = %v; want OVER_LIMIT as the reference", r.OverallCode)
	}
}

func TestUnmatched(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	r := f.call(t, rlReq("gatehouse", d("route", "nope", "tier", "gold"), d("tier", "gold"), d("route", "orders", "tier", "platinum")))
	if r.OverallCode != rlsv3.RateLimitResponse_OK || len(r.Statuses) != 3 {
		t.Fatalf("unmatched = %v", r)
	}
	for reason, want := range map[string]float64{"unknown_route": 1, "no_route_entry": 1, "no_rule": 1} {
		if n := testutil.ToFloat64(f.lim.m.unmatched.WithLabelValues("gatehouse", reason)); n != want {
			t.Errorf("unmatched %s = %v; want %v", reason, n, want)
		}
	}
}

// TestTTLCoversTheNextWindow: a sliding window's counter is the previous
// window's count through the whole next window, even when the next
// calendar month is longer than this one.
func TestTTLCoversTheNextWindow(t *testing.T) {
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit:\n  tiers: {gold: [{requests: 5, per: month, calendar: true, algorithm: sliding}, {requests: 5, per: second}]}\nroutes: [{id: r, match: {prefix: /}}]\n")
	rule := f.lim.Snapshot().Rules[0]
	feb := int64(1709128800_000_000) // 2024-02-28 14:00 UTC
	c, _, next := rule.Limits[0].Clock(feb)
	endOfMarch := int64(1711929600_000_000) // 2024-04-01 00:00 UTC
	if next != endOfMarch {
		t.Fatalf("next window ends %d; want %d", next, endOfMarch)
	}
	if got, want := ttlOf(rule.Limits[0], c, next), (endOfMarch-feb)/1000+1000; got != want {
		t.Errorf("sliding TTL = %dms; want %dms (to the end of March, plus a second)", got, want)
	}
	c, _, next = rule.Limits[1].Clock(feb)
	if got := ttlOf(rule.Limits[1], c, next); got != 2000 {
		t.Errorf("fixed 1s TTL at a second's start = %dms; want 2000", got)
	}
}

// TestReloadResizesLocalCache: localCache.maxEntries applies on reload;
// 0 turns the cache off, so every refusal asks the store again.
func TestReloadResizesLocalCache(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	anon := rlReq("gatehouse", d("route", "orders", "subject", "10.0.0.2"))
	f.call(t, anon) // 1/hour used up
	cfg, err := config.LoadBytes("<test>", []byte(strings.Replace(gatehouseYAML, "ratelimit:\n", "ratelimit:\n  localCache: {maxEntries: 0}\n", 1)), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.lim.Swap(snap, f.store, SettingsFrom(cfg.RateLimit))
	before := f.store.evals.Load()
	for i := 0; i < 3; i++ {
		if r := f.call(t, anon); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("refusal %d = %v", i, r.OverallCode)
		}
	}
	if n := f.store.evals.Load() - before; n != 3 {
		t.Errorf("%d round trips for 3 refusals with the cache turned off; want 3", n)
	}
}

// TestDetailedMetricBounded: detailed_metric adds one series per value, at
// most maxDetailed per rule; further values share "<rule>:other".
func TestDetailedMetricBounded(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(file, []byte("domain: dm\ndescriptors:\n  - key: user\n    detailed_metric: true\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+file+"]}\n")
	for i := 0; i < maxDetailed+50; i++ {
		f.call(t, rlReq("dm", d("user", "u"+strconv.Itoa(i))))
	}
	rules := map[string]bool{}
	fams, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != "gatehouse_ratelimit_hits_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" {
					rules[l.GetValue()] = true
				}
			}
		}
	}
	if !rules["dm.user_u0"] || !rules["dm.user:other"] {
		t.Errorf("rule series lack dm.user_u0 or dm.user:other")
	}
	// The rule's own series, the override series, maxDetailed values and other.
	if len(rules) > maxDetailed+3 {
		t.Errorf("%d rule series after %d values; want at most %d", len(rules), maxDetailed+50, maxDetailed+3)
	}
}

// ruleSeries counts the rule labels of domain's hits series.
func ruleSeries(t *testing.T, reg *prometheus.Registry, domain string) int {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fam := range fams {
		if fam.GetName() != "gatehouse_ratelimit_hits_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "domain" && l.GetValue() == domain {
					n++
				}
			}
		}
	}
	return n
}

// TestDetailedMetricBoundAcrossReloads: a reload keeps a detailed rule's
// per-value series and their bound; a reload that drops the rule drops
// them.
func TestDetailedMetricBoundAcrossReloads(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(file, []byte("domain: dm\ndescriptors:\n  - key: user\n    detailed_metric: true\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+file+"]}\n")
	send := func(from, to int) {
		for i := from; i < to; i++ {
			f.call(t, rlReq("dm", d("user", "u"+strconv.Itoa(i))))
		}
	}
	send(0, 700)
	snap, settings := f.lim.Snapshot(), f.lim.state.Load().settings
	f.lim.Swap(snap, f.store, settings) // a reload of the same config
	send(700, 1400)
	// The rule's own series, the override series, maxDetailed values and other.
	if n := ruleSeries(t, f.reg, "dm"); n > maxDetailed+3 {
		t.Errorf("%d series of domain dm after a reload and 1,400 values; want at most %d", n, maxDetailed+3)
	}
	cfg, err := config.LoadBytes("<test>", []byte(gatehouseYAML), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := quota.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.lim.Swap(other, f.store, SettingsFrom(cfg.RateLimit))
	if n := ruleSeries(t, f.reg, "dm"); n > 2 {
		t.Errorf("%d series of domain dm remain after a reload without it; want its per-value series dropped", n)
	}
}

// TestFailClosedHeadersWithAnotherLimit: a request refused by a fail-closed
// descriptor carries Retry-After, even when another descriptor of it
// reports a limit that did not refuse.
func TestFailClosedHeadersWithAnotherLimit(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	shadow := d("route", "shadowed", "tier", "gold", "subject", "h")
	f.call(t, rlReq("gatehouse", shadow))
	f.call(t, rlReq("gatehouse", shadow)) // 2/second used up: the key is cached
	f.store.fail.Store(true)
	r := f.call(t, rlReq("gatehouse", shadow, d("route", "orders", "subject", "h")))
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("overall = %v; want OVER_LIMIT (orders fails closed for anonymous)", r.OverallCode)
	}
	hdr := map[string]string{}
	for _, h := range r.ResponseHeadersToAdd {
		hdr[h.Key] = h.Value
	}
	if hdr["retry-after"] != "1" {
		t.Errorf("headers = %v; want retry-after: 1 (breaker.openFor)", hdr)
	}
	if _, ok := hdr["x-ratelimit-remaining"]; ok {
		t.Errorf("headers = %v; a refusal by the failure mode reports no limit's remaining count", hdr)
	}
}

// swappingStore runs hook (once) while the first Eval after arming it is
// in flight: a reload landing during a round trip.
type swappingStore struct {
	*countingStore
	hook func()
}

func (s *swappingStore) Eval(ctx context.Context, ops []*store.Op) error {
	if h := s.hook; h != nil {
		s.hook = nil
		h()
	}
	return s.countingStore.Eval(ctx, ops)
}

// TestReloadDuringRoundTripLeavesNoStaleRefusal: a request decided on the
// old config (2/hour) while a reload raises the limit (5/hour) must not
// leave the new config a cached refusal until the end of the hour.
func TestReloadDuringRoundTripLeavesNoStaleRefusal(t *testing.T) {
	old := strings.Replace(gatehouseYAML, "{requests: 1, per: hour}", "{requests: 2, per: hour}", 1)
	f := newFixture(t, old)
	cfg, err := config.LoadBytes("<test>", []byte(strings.Replace(gatehouseYAML, "{requests: 1, per: hour}", "{requests: 5, per: hour}", 1)), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raised, err := quota.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := &swappingStore{countingStore: f.store}
	f.lim.Swap(f.lim.Snapshot(), st, SettingsFrom(cfg.RateLimit))
	anon := rlReq("gatehouse", d("route", "orders", "subject", "10.0.0.3"))
	f.call(t, anon) // 1 of 2/hour
	st.hook = func() { f.lim.Swap(raised, st, SettingsFrom(cfg.RateLimit)) }
	// 2 of 2/hour, decided on the old config: it leaves 0, which the old
	// config would cache until the end of the hour.
	if r := f.call(t, anon); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("2nd request = %v; want OK", r.OverallCode)
	}
	if r := f.call(t, anon); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("3rd request, on 5/hour = %v; want OK (3 of 5): a refusal of the old config was cached for the new one", r.OverallCode)
	}
}

// TestDetailedMetricLongUTF8Value: a detailed_metric series name cut at 256
// bytes stays valid UTF-8 (prometheus panics on a label that is not).
func TestDetailedMetricLongUTF8Value(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(file, []byte("domain: dm\ndescriptors:\n  - key: user\n    detailed_metric: true\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+file+"]}\n")
	// "dm.user_" is 8 bytes; 'é' is 2: byte 256 falls inside a rune.
	v := "x" + strings.Repeat("é", 200)
	if r := f.call(t, rlReq("dm", d("user", v))); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("overall = %v; want OK", r.OverallCode)
	}
}
