package limiter

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/testing/protocmp"
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
