package limiter

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// envoyFixture serves one envoyproxy/ratelimit config file; extra is
// added to the ratelimit section.
func envoyFixture(t *testing.T, file, extra string) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	return newFixture(t, "apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: ["+path+"]\n"+extra)
}

const namesFile = `domain: shop
descriptors:
  - key: plain
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: named
    rate_limit: {unit: hour, requests_per_unit: 5, name: per_named}
`

// TestCurrentLimitNameIsTheRuleName: current_limit.name is the rule's
// name, empty for an unnamed rule and for Envoy's limit override, as the
// reference sends it (Envoy copies it into response headers); the unit
// names an unnamed limit only in gatehouse's RateLimit-Policy header.
func TestCurrentLimitNameIsTheRuleName(t *testing.T) {
	f := envoyFixture(t, namesFile, "")
	ov := d("plain", "x")
	ov.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 3, Unit: typev3.RateLimitUnit_DAY}
	r := f.call(t, rlReq("shop", d("plain", "a"), d("named", "b"), ov))
	for i, want := range []string{"", "per_named", ""} {
		if got := r.Statuses[i].GetCurrentLimit().GetName(); got != want {
			t.Errorf("statuses[%d].current_limit.name = %q; want %q", i, got, want)
		}
	}
	r = f.call(t, rlReq("shop", d("plain", "a")))
	policy := ""
	for _, h := range r.ResponseHeadersToAdd {
		if h.Key == HeaderRateLimitPolicy {
			policy = h.Value
		}
	}
	if policy != `"minute";q=5;w=60` {
		t.Errorf("RateLimit-Policy = %q; want the unit naming the unnamed limit", policy)
	}
	if r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("overall = %v", r.OverallCode)
	}
}

const quotaFile = `domain: q
descriptors:
  - key: k
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
`

// TestDurationUntilResetWholeSeconds: duration_until_reset is in whole
// seconds rounded up, as the reference's unit − now % unit.
func TestDurationUntilResetWholeSeconds(t *testing.T) {
	f := envoyFixture(t, namesFile, "")
	f.now = t0 + 1_000_000 // 10:00:01.25: 58.75 s to the minute's end
	r := f.call(t, rlReq("shop", d("plain", "a")))
	if got := r.Statuses[0].GetDurationUntilReset(); got.GetSeconds() != 59 || got.GetNanos() != 0 {
		t.Errorf("duration_until_reset = %v; want 59s (58.75s rounded up)", got)
	}
	gh := newFixture(t, gatehouseYAML) // 10:00:00.25, 2/second
	r = gh.call(t, rlReq("gatehouse", gold("zed")))
	if got := r.Statuses[0].GetDurationUntilReset(); got.GetSeconds() != 1 || got.GetNanos() != 0 {
		t.Errorf("gatehouse domain: duration_until_reset = %v; want 1s (0.75s rounded up)", got)
	}
}

// TestQuotaModeOverHasNoDuration: a quota_mode descriptor past its limit
// answers OK with its limit and remaining, but no duration_until_reset,
// as the reference's status does.
func TestQuotaModeOverHasNoDuration(t *testing.T) {
	f := envoyFixture(t, quotaFile, "")
	r := f.call(t, rlReq("q", d("k", "v")))
	if r.Statuses[0].GetDurationUntilReset() == nil {
		t.Fatalf("within the quota: no duration_until_reset; want one")
	}
	r = f.call(t, rlReq("q", d("k", "v")))
	s := r.Statuses[0]
	if s.Code != rlsv3.RateLimitResponse_OK || s.GetCurrentLimit().GetRequestsPerUnit() != 1 || s.LimitRemaining != 0 {
		t.Fatalf("quota mode past the limit = %v; want OK with the limit and 0 remaining", s)
	}
	if s.DurationUntilReset != nil {
		t.Errorf("quota mode past the limit has duration_until_reset %v; the reference sends none", s.DurationUntilReset)
	}
}

// TestUnknownDomainAnswersOK: a domain no file declares is not limited:
// OK for every descriptor, as the reference answers (an error would make
// Envoy with failure_mode_deny refuse the whole domain), in gatehouse's
// own config too; it is counted per domain, with the label bounded.
func TestUnknownDomainAnswersOK(t *testing.T) {
	for name, f := range map[string]*fixture{
		"envoy config": envoyFixture(t, namesFile, ""),
		"gatehouse":    newFixture(t, gatehouseYAML),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := f.lim.ShouldRateLimit(context.Background(), rlReq("shopp", d("plain", "a"), d("named", "b")))
			if err != nil {
				t.Fatalf("ShouldRateLimit(unknown domain) = %v; want OK", err)
			}
			want := &rlsv3.RateLimitResponse{
				OverallCode: rlsv3.RateLimitResponse_OK,
				Statuses:    []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OK}, {Code: rlsv3.RateLimitResponse_OK}},
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("unknown domain answer (-want +got):\n%s", diff)
			}
			if n := testutil.ToFloat64(f.lim.m.unknown.WithLabelValues("shopp")); n != 1 {
				t.Errorf("unknown_domain_requests_total{domain=shopp} = %v; want 1", n)
			}
			for i := 0; i < 2*maxUnknownDomains; i++ {
				f.call(t, rlReq(fmt.Sprintf("d%d", i), d("k", "v")))
			}
			if n := testutil.CollectAndCount(f.lim.m.unknown); n > maxUnknownDomains+1 {
				t.Errorf("%d unknown-domain series; want at most %d", n, maxUnknownDomains+1)
			}
		})
	}
}

// replicas builds n limiters on one config and one shared in-process
// store, each with its own local cache of cacheEntries (0: none) and a
// shared fake clock.
func replicas(t *testing.T, yaml string, n, cacheEntries int, now *int64) []*Limiter {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory(0)
	var out []*Limiter
	for i := 0; i < n; i++ {
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		l := New(slog.New(slog.DiscardHandler), m, store.NewOverLimitCache(cacheEntries), "gh:")
		l.Now = func() int64 { return *now }
		l.Swap(snap, st, SettingsFrom(cfg.RateLimit))
		out = append(out, l)
	}
	return out
}

// TestCachedRefusalIsCountedAsTheReference: a key is cached only once
// strictly past its limit, so the refused hit that got it there was
// counted, and a check-only request (hits_addend 0) on another replica
// answers OVER_LIMIT as the reference, which counts every hit.
func TestCachedRefusalIsCountedAsTheReference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rl.yaml")
	os.WriteFile(path, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 2}\n"), 0o644)
	now := t0
	reps := replicas(t, "apiVersion: gatehouse/v1\nratelimit: {envoyConfigs: ["+path+"]}\n", 2, 1000, &now)
	ask := func(l *Limiter, hits uint64) rlsv3.RateLimitResponse_Code {
		desc := d("k", "v")
		desc.HitsAddend = wrapperspb.UInt64(hits)
		r, err := l.ShouldRateLimit(context.Background(), rlReq("d", desc))
		if err != nil {
			t.Fatal(err)
		}
		return r.OverallCode
	}
	var got []string
	for _, step := range []struct {
		rep  int
		hits uint64
	}{{0, 1}, {0, 1}, {0, 1}, {0, 1}, {1, 0}, {0, 0}} {
		got = append(got, ask(reps[step.rep], step.hits).String())
	}
	want := "OK OK OVER_LIMIT OVER_LIMIT OVER_LIMIT OVER_LIMIT"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("answers = %s; want %s (the reference counts the refused hit, so a check-only request after it is over)", g, want)
	}
}

const cacheYAML = `apiVersion: gatehouse/v1
ratelimit:
  envoyConfigs: [%s]
  tiers:
    gold:
      - {requests: 3, per: second}
      - {requests: 7, per: minute, algorithm: sliding}
      - {requests: 4, per: second, algorithm: gcra, burst: 2}
    free:
      - {requests: 5, per: minute, algorithm: sliding}
    bucket:
      - {requests: 2, per: second, algorithm: gcra, burst: 3}
routes:
  - id: r
    match: {prefix: /}
`

// TestCacheAnswersAsTheStore: three replicas with the local cache on give,
// request for request, the very answers (codes, limits, remaining,
// durations, headers) of one replica without it, over random sequences of
// gatehouse rules (fixed, sliding, GCRA, several limits) and envoy rules
// with hits_addend 0, 1 and N: no answer depends on which replica's cache
// holds a key.
func TestCacheAnswersAsTheStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rl.yaml")
	os.WriteFile(path, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 4}\n  - key: q\n    quota_mode: true\n    rate_limit: {unit: minute, requests_per_unit: 3}\n"), 0o644)
	yaml := fmt.Sprintf(cacheYAML, path)
	for seed := uint64(1); seed <= 20; seed++ {
		now := t0
		cached := replicas(t, yaml, 3, 1000, &now)
		plain := replicas(t, yaml, 1, 0, &now)[0]
		r := rand.New(rand.NewPCG(seed, 99))
		localAnswers := 0
		for step := 0; step < 400; step++ {
			now += r.Int64N(120_000)
			var req *rlsv3.RateLimitRequest
			switch r.IntN(3) {
			case 0:
				req = rlReq("gatehouse", d("route", "r", "tier", []string{"gold", "free", "bucket"}[r.IntN(3)], "subject", fmt.Sprint(r.IntN(2))))
			case 1:
				req = rlReq("d", d("k", fmt.Sprint(r.IntN(2))))
			default:
				req = rlReq("d", d("q", "x"), d("k", fmt.Sprint(r.IntN(2))))
			}
			switch r.IntN(4) {
			case 0:
				req.Descriptors[0].HitsAddend = wrapperspb.UInt64(0)
			case 1:
				req.HitsAddend = uint32(2 + r.IntN(3))
			}
			rep := cached[r.IntN(len(cached))]
			got, err := rep.ShouldRateLimit(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := plain.ShouldRateLimit(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Fatalf("seed %d step %d %v: a replica with the cache answers differently (-without +with):\n%s", seed, step, req, diff)
			}
		}
		for _, rep := range cached {
			localAnswers += int(testutil.ToFloat64(rep.m.decisions.WithLabelValues("gatehouse", "gatehouse/r/gold", "over_limit_local")))
			localAnswers += int(testutil.ToFloat64(rep.m.decisions.WithLabelValues("d", "d.k", "over_limit_local")))
		}
		if localAnswers == 0 {
			t.Fatalf("seed %d: the cache answered nothing; the test does not exercise it", seed)
		}
	}
}

// negative is a descriptor giving hits back (is_negative_hits).
func negative(hits uint64, kv ...string) *ratelimitv3.RateLimitDescriptor {
	desc := d(kv...)
	desc.HitsAddend, desc.IsNegativeHits = wrapperspb.UInt64(hits), true
	return desc
}

// TestNegativeHitsRefund: is_negative_hits gives quota back, for fixed,
// sliding and GCRA limits and envoy rules alike, never below zero; the
// refund answers OK with what remains, and the local cache forgets the
// key (on this replica; others within localCache.maxAge).
func TestNegativeHitsRefund(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rl.yaml")
	os.WriteFile(path, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 3}\n"), 0o644)
	yaml := fmt.Sprintf(cacheYAML, path)
	for _, tc := range []struct {
		name   string
		domain string
		desc   []string
		limit  int
	}{
		{"fixed and sliding and gcra", "gatehouse", []string{"route", "r", "tier", "gold", "subject", "s"}, 2}, // gcra burst 2
		{"sliding", "gatehouse", []string{"route", "r", "tier", "free", "subject", "s"}, 5},
		{"gcra", "gatehouse", []string{"route", "r", "tier", "bucket", "subject", "s"}, 3},
		{"envoy fixed", "d", []string{"k", "v"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, yaml)
			use := func() rlsv3.RateLimitResponse_Code { return f.call(t, rlReq(tc.domain, d(tc.desc...))).OverallCode }
			for i := 0; i < tc.limit; i++ {
				if c := use(); c != rlsv3.RateLimitResponse_OK {
					t.Fatalf("request %d = %v; want OK", i, c)
				}
			}
			if c := use(); c != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Fatalf("past the limit = %v; want OVER_LIMIT", c)
			}
			evals := f.store.evals.Load()
			r := f.call(t, rlReq(tc.domain, negative(1, tc.desc...)))
			if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].GetCurrentLimit() == nil {
				t.Fatalf("refund = %v; want OK with the limit", r)
			}
			if f.store.evals.Load() != evals+1 {
				t.Errorf("a refund must reach the store")
			}
			// An envoy rule counted the refused hit: one refund brings it
			// back to the limit, not below it.
			if tc.domain == "d" {
				f.call(t, rlReq(tc.domain, negative(1, tc.desc...)))
			}
			if c := use(); c != rlsv3.RateLimitResponse_OK {
				t.Errorf("after the refund = %v; want OK (one hit given back)", c)
			}
			if c := use(); c != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Errorf("after using the refunded hit = %v; want OVER_LIMIT", c)
			}
			// A refund of more than was used never takes a counter below
			// zero: the limit admits exactly its limit again, no more.
			f.call(t, rlReq(tc.domain, negative(1000, tc.desc...)))
			admitted := 0
			for i := 0; i < tc.limit+3; i++ {
				if use() == rlsv3.RateLimitResponse_OK {
					admitted++
				}
			}
			if admitted != tc.limit {
				t.Errorf("after refunding 1000: %d admitted; want exactly %d (no counter below zero)", admitted, tc.limit)
			}
			if n := testutil.ToFloat64(f.lim.m.decisions.WithLabelValues(tc.domain, f.lim.Snapshot().Rules[0].ID, "refund")) + testutil.ToFloat64(f.lim.m.decisions.WithLabelValues(tc.domain, "d.k", "refund")); n == 0 && tc.domain == "d" {
				t.Errorf("refunds not metered")
			}
		})
	}
}

// TestNegativeHitsChargedInReferenceMode: the pinned reference does not
// know is_negative_hits (its protos predate the field) and charges the
// hits; reference mode answers the same, and counts it.
func TestNegativeHitsChargedInReferenceMode(t *testing.T) {
	f := envoyFixture(t, "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 3}\n", "  reference: {}\n")
	if r := f.call(t, rlReq("d", negative(2, "k", "v"))); r.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("is_negative_hits 2 in reference mode: remaining %d; want 1 (charged, as the reference)", r.Statuses[0].LimitRemaining)
	}
	if n := testutil.ToFloat64(f.lim.m.negativeCharged); n != 1 {
		t.Errorf("negative_hits_charged_total = %v; want 1", n)
	}
}

const refFile = `domain: shop
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: quota
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
`

func headerMap(r *rlsv3.RateLimitResponse) map[string]string {
	out := map[string]string{}
	for _, h := range r.ResponseHeadersToAdd {
		out[h.Key] = h.Value
	}
	return out
}

// TestReferenceModeAnswers: in reference mode the answer carries the
// reference's headers (the last refusing descriptor, else the first with
// least remaining), its dynamic metadata, and its global shadow and quota
// modes act as the reference's: shadow on the overall code only.
func TestReferenceModeAnswers(t *testing.T) {
	f := envoyFixture(t, refFile, "  reference:\n    responseHeaders: {enabled: true}\n    dynamicMetadata: true\n")
	f.now = t0 + 5_000_000 // 10:00:05.25
	r := f.call(t, rlReq("shop", d("user", "a"), d("quota", "q")))
	if got, want := headerMap(r), map[string]string{"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "3595"}; !cmp.Equal(got, want) {
		t.Errorf("headers = %v; want %v (the quota descriptor has least remaining)", got, want)
	}
	r = f.call(t, rlReq("shop", d("quota", "q"), d("user", "a")))
	if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].Code != rlsv3.RateLimitResponse_OK {
		t.Fatalf("quota mode past its limit = %v", r)
	}
	md := r.GetDynamicMetadata().AsMap()
	if got := fmt.Sprintf("%v %v %v", md["quotaModeViolations"], md["quotaModeEnabled"], md["domain"]); got != "[0] true shop" {
		t.Errorf("dynamic metadata = %v; want quotaModeViolations [0], quotaModeEnabled true, domain shop", md)
	}
	if got, want := headerMap(r), map[string]string{"RateLimit-Limit": "1", "RateLimit-Remaining": "0", "RateLimit-Reset": "3595"}; !cmp.Equal(got, want) {
		t.Errorf("headers = %v; want %v (quota and user both at 0 remaining: the first wins)", got, want)
	}
	r = f.call(t, rlReq("shop", d("user", "a"), d("shadow", "s"), d("shadow", "s")))
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || r.Statuses[2].Code != rlsv3.RateLimitResponse_OK || r.Statuses[2].GetDurationUntilReset().GetSeconds() != 1 {
		t.Errorf("user over, shadow over = %v", r)
	}

	g := envoyFixture(t, refFile, "  reference: {shadowMode: true, quotaMode: true}\n")
	for i := 0; i < 3; i++ {
		r = g.call(t, rlReq("shop", d("user", "b")))
	}
	if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].Code != rlsv3.RateLimitResponse_OK || r.Statuses[0].DurationUntilReset != nil || len(r.ResponseHeadersToAdd) != 0 {
		t.Errorf("global quota mode past the limit = %v; want OK, no duration, no header", r)
	}
	h := envoyFixture(t, refFile, "  reference: {shadowMode: true}\n")
	for i := 0; i < 3; i++ {
		r = h.call(t, rlReq("shop", d("user", "c")))
	}
	if r.OverallCode != rlsv3.RateLimitResponse_OK || r.Statuses[0].Code != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("global shadow mode past the limit = %v; want overall OK, the status still OVER_LIMIT", r)
	}
}

// TestReferenceModeStoreErrorIsAnError: the reference answers an error
// when Redis fails, so that Envoy's failure_mode_deny decides; so does
// reference mode.
func TestReferenceModeStoreErrorIsAnError(t *testing.T) {
	f := envoyFixture(t, refFile, "  reference: {}\n")
	f.store.fail.Store(true)
	_, err := f.lim.ShouldRateLimit(context.Background(), rlReq("shop", d("user", "a")))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("store down in reference mode = %v; want Unavailable", err)
	}
	if n := f.lim.m.ref.redisError.Load(); n != 1 {
		t.Errorf("should_rate_limit_error{redis_error} = %d; want 1", n)
	}
	if r := f.call(t, rlReq("shop", d("nothing", "x"))); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("a request needing no round trip = %v; want OK", r)
	}
	if n := testutil.ToFloat64(f.lim.m.degraded.WithLabelValues("shop", "", "error")); n != 1 {
		t.Errorf("degraded{domain=shop, mode=error} = %v; want 1", n)
	}
}

// TestReferenceModeKeepsGatehouseFailureModes: reference mode is the
// envoy config domains'; gatehouse's own domain, served beside them,
// answers a store failure by its tiers' failure modes, not with an error.
func TestReferenceModeKeepsGatehouseFailureModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rl.yaml")
	if err := os.WriteFile(path, []byte(refFile), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "apiVersion: gatehouse/v1\nratelimit:\n  envoyConfigs: ["+path+"]\n  reference: {}\n  tiers: {gold: [{requests: 5, per: second}], anonymous: [{requests: 5, per: second}]}\nroutes:\n  - {id: r, match: {prefix: /}}\n")
	f.store.fail.Store(true)
	if _, err := f.lim.ShouldRateLimit(context.Background(), rlReq("shop", d("user", "a"))); status.Code(err) != codes.Unavailable {
		t.Errorf("envoy config domain, store down, reference mode = %v; want Unavailable", err)
	}
	if r := f.call(t, rlReq("gatehouse", d("route", "r", "tier", "gold", "subject", "s"))); r.OverallCode != rlsv3.RateLimitResponse_OK || len(r.RequestHeadersToAdd) != 1 {
		t.Errorf("gatehouse domain, verified tier = %v; want OK, marked degraded", r)
	}
	if r := f.call(t, rlReq("gatehouse", d("route", "r", "subject", "s"))); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("gatehouse domain, anonymous = %v; want OVER_LIMIT", r.OverallCode)
	}
}

// TestReferenceModeKeys: reference mode keeps counters under the
// reference's own Redis keys (CACHE_KEY_PREFIX + domain_key_value_…_window).
func TestReferenceModeKeys(t *testing.T) {
	f := envoyFixture(t, refFile, "  reference: {}\n")
	rec := &recordingStore{Store: f.store}
	f.lim.Swap(f.lim.Snapshot(), rec, f.lim.state.Load().settings)
	f.call(t, rlReq("shop", d("user", "a")))
	ov := d("user", "b")
	ov.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 3, Unit: typev3.RateLimitUnit_HOUR}
	f.call(t, rlReq("shop", ov))
	want := []string{"gh:shop_user_a_1709287200", "gh:shop_user_b_1709287200"}
	if !cmp.Equal(rec.keys, want) {
		t.Errorf("keys = %v; want %v", rec.keys, want)
	}
}

type recordingStore struct {
	store.Store
	keys []string
}

func (s *recordingStore) Eval(ctx context.Context, ops []*store.Op) error {
	for _, op := range ops {
		for _, l := range op.Limits {
			s.keys = append(s.keys, l.Key)
		}
	}
	return s.Store.Eval(ctx, ops)
}

// TestReferenceMetrics: the envoy rules' hits are counted under the
// reference's Prometheus names and labels, split into within, near and
// over the limit as the reference splits them.
func TestReferenceMetrics(t *testing.T) {
	f := envoyFixture(t, refFile+`  - key: tenant
    descriptors:
      - key: user
        detailed_metric: true
        rate_limit: {unit: hour, requests_per_unit: 10}
`, "")
	req := rlReq("shop", d("user", "a"))
	req.HitsAddend = 3 // 3 of 2: 2 near (ratio 0.8 of 2 is 1), 1 over
	f.call(t, req)
	for i := 0; i < 3; i++ {
		f.call(t, rlReq("shop", d("tenant", "t", "user", fmt.Sprint(i))))
	}
	want := `
# HELP ratelimit_service_rate_limit_near_limit envoyproxy/ratelimit's per-rule counter ratelimit.service.rate_limit.<stats key>.near_limit (hits).
# TYPE ratelimit_service_rate_limit_near_limit counter
ratelimit_service_rate_limit_near_limit{domain="shop",key1="user"} 1
ratelimit_service_rate_limit_near_limit{domain="shop",key1="quota"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="shadow"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="limit_override"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="tenant",key2="user"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="tenant_t",key2="user_0"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="tenant_t",key2="user_1"} 0
ratelimit_service_rate_limit_near_limit{domain="shop",key1="tenant_t",key2="user_2"} 0
# HELP ratelimit_service_rate_limit_over_limit envoyproxy/ratelimit's per-rule counter ratelimit.service.rate_limit.<stats key>.over_limit (hits).
# TYPE ratelimit_service_rate_limit_over_limit counter
ratelimit_service_rate_limit_over_limit{domain="shop",key1="user"} 1
ratelimit_service_rate_limit_over_limit{domain="shop",key1="quota"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="shadow"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="limit_override"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="tenant",key2="user"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="tenant_t",key2="user_0"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="tenant_t",key2="user_1"} 0
ratelimit_service_rate_limit_over_limit{domain="shop",key1="tenant_t",key2="user_2"} 0
# HELP ratelimit_service_rate_limit_total_hits envoyproxy/ratelimit's per-rule counter ratelimit.service.rate_limit.<stats key>.total_hits (hits).
# TYPE ratelimit_service_rate_limit_total_hits counter
ratelimit_service_rate_limit_total_hits{domain="shop",key1="user"} 3
ratelimit_service_rate_limit_total_hits{domain="shop",key1="quota"} 0
ratelimit_service_rate_limit_total_hits{domain="shop",key1="shadow"} 0
ratelimit_service_rate_limit_total_hits{domain="shop",key1="limit_override"} 0
ratelimit_service_rate_limit_total_hits{domain="shop",key1="tenant",key2="user"} 0
ratelimit_service_rate_limit_total_hits{domain="shop",key1="tenant_t",key2="user_0"} 1
ratelimit_service_rate_limit_total_hits{domain="shop",key1="tenant_t",key2="user_1"} 1
ratelimit_service_rate_limit_total_hits{domain="shop",key1="tenant_t",key2="user_2"} 1
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "ratelimit_service_rate_limit_total_hits", "ratelimit_service_rate_limit_over_limit", "ratelimit_service_rate_limit_near_limit"); err != nil {
		t.Error(err)
	}
}
