package limiter

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/config"
)

// Reference are the settings of the reference-compatible mode
// (ratelimit.reference): the envoy config domains answer exactly as
// envoyproxy/ratelimit at the pinned version.
type Reference struct {
	// Headers sends the reference's RateLimit-Limit/-Remaining/-Reset,
	// under these names, instead of gatehouse's headers
	// (LIMIT_RESPONSE_HEADERS_ENABLED).
	Headers                                   bool
	LimitHeader, RemainingHeader, ResetHeader string
	// DynamicMetadata, ShadowMode and QuotaMode are
	// RESPONSE_DYNAMIC_METADATA, SHADOW_MODE and QUOTA_MODE.
	DynamicMetadata, ShadowMode, QuotaMode bool
}

// referenceFrom reads ratelimit.reference; nil when absent.
func referenceFrom(r *config.RateLimitReference) *Reference {
	if r == nil {
		return nil
	}
	return &Reference{
		Headers:         r.ResponseHeaders.Enabled,
		LimitHeader:     r.ResponseHeaders.Limit,
		RemainingHeader: r.ResponseHeaders.Remaining,
		ResetHeader:     r.ResponseHeaders.Reset,
		DynamicMetadata: r.DynamicMetadata,
		ShadowMode:      r.ShadowMode,
		QuotaMode:       r.QuotaMode,
	}
}

// refHeaderPick follows the reference's choice of the descriptor its
// headers report: the last one refusing (quota mode aside), else the
// first with the least remaining.
type refHeaderPick struct {
	s   *rlsv3.RateLimitResponse_DescriptorStatus
	min uint32
}

func newRefHeaderPick() refHeaderPick { return refHeaderPick{min: 1<<32 - 1} }

// consider takes status s as the reference sees it before quota mode
// turns it OK: over says it refuses (and is not in quota mode).
func (p *refHeaderPick) consider(s *rlsv3.RateLimitResponse_DescriptorStatus, remaining uint32, over bool) {
	if s.GetCurrentLimit() != nil && remaining < p.min {
		p.s, p.min = s, remaining
	}
	if over {
		p.s, p.min = s, 0
	}
}

// headers renders the reference's three headers for the picked status;
// nowSec is the reference's clock (whole seconds).
func (p *refHeaderPick) headers(ref *Reference, remaining uint32, nowSec int64) []*corev3.HeaderValue {
	if !ref.Headers || p.s == nil {
		return nil
	}
	l := p.s.GetCurrentLimit()
	unit := unitSeconds(l.GetUnit())
	reset := int64(0)
	if unit > 0 {
		reset = unit - nowSec%unit
	}
	return []*corev3.HeaderValue{
		{Key: ref.LimitHeader, Value: strconv.FormatUint(uint64(l.GetRequestsPerUnit()), 10)},
		{Key: ref.RemainingHeader, Value: strconv.FormatUint(uint64(remaining), 10)},
		{Key: ref.ResetHeader, Value: strconv.FormatInt(reset, 10)},
	}
}

// unitSeconds is the length of a current_limit unit, as the reference's
// UnitToDivider.
func unitSeconds(u rlsv3.RateLimitResponse_RateLimit_Unit) int64 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 3600
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 86400
	case rlsv3.RateLimitResponse_RateLimit_WEEK:
		return 7 * 86400
	case rlsv3.RateLimitResponse_RateLimit_MONTH:
		return 30 * 86400
	case rlsv3.RateLimitResponse_RateLimit_YEAR:
		return 365 * 86400
	}
	return 0
}

// refMetadata is the reference's response dynamic metadata
// (RESPONSE_DYNAMIC_METADATA): the domain, each descriptor's entries,
// limit override and hits_addend, the request's hits_addend, the indexes
// of descriptors past a quota-mode limit, and whether any matched rule is
// in quota mode.
func refMetadata(req *rlsv3.RateLimitRequest, quotaViolations []int, quotaEnabled bool) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.GetDomain())}
	descs := make([]*structpb.Value, 0, len(req.GetDescriptors()))
	for _, d := range req.GetDescriptors() {
		if d == nil {
			continue
		}
		df := map[string]*structpb.Value{}
		es := make([]*structpb.Value, 0, len(d.GetEntries()))
		for _, e := range d.GetEntries() {
			es = append(es, structpb.NewStringValue(e.GetKey()+"="+e.GetValue()))
		}
		df["entries"] = structpb.NewListValue(&structpb.ListValue{Values: es})
		if d.GetLimit() != nil {
			df["limit"] = structpb.NewStringValue(overrideText(d.GetLimit()))
		}
		if h := d.GetHitsAddend(); h != nil {
			df["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
		}
		descs = append(descs, structpb.NewStructValue(&structpb.Struct{Fields: df}))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: descs})
	if h := req.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}
	if len(quotaViolations) > 0 {
		vs := make([]*structpb.Value, len(quotaViolations))
		for i, v := range quotaViolations {
			vs[i] = structpb.NewNumberValue(float64(v))
		}
		fields["quotaModeViolations"] = structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	fields["quotaModeEnabled"] = structpb.NewBoolValue(quotaEnabled)
	return &structpb.Struct{Fields: fields}
}

// overrideText renders a limit override as the protobuf text format does
// ("requests_per_unit:2 unit:HOUR"), with single spaces: the reference
// sends the message's String(), whose spacing protobuf-go varies on
// purpose from build to build.
func overrideText(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride) string {
	var parts []string
	if o.GetRequestsPerUnit() != 0 {
		parts = append(parts, "requests_per_unit:"+strconv.FormatUint(uint64(o.GetRequestsPerUnit()), 10))
	}
	if o.GetUnit() != typev3.RateLimitUnit_UNKNOWN {
		name := typev3.RateLimitUnit_name[int32(o.GetUnit())]
		if name == "" {
			name = strconv.FormatInt(int64(o.GetUnit()), 10)
		}
		parts = append(parts, "unit:"+name)
	}
	return strings.Join(parts, " ")
}
