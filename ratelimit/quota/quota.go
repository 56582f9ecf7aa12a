// Package quota compiles the rate limit config — gatehouse's per-route,
// per-tier quotas and envoyproxy/ratelimit's YAML domains — into immutable
// lookup tables: for each RLS descriptor, the Rule that applies to it and
// the identity its counters are kept under.
package quota

import (
	"strconv"
	"strings"
	"sync/atomic"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/gatehouse/gatehouse/internal/sfv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// Limit is one compiled limit of a rule.
type Limit struct {
	// Name names the limit in RateLimit-Policy and metrics. For an
	// unnamed envoy config rule it is the unit; current_limit.name (in
	// Proto) stays the rule's own name, empty as the reference sends it.
	Name   string
	Spec   algo.Spec
	Window algo.Window
	// Tag identifies the limit's counter among the rule's: algorithm and
	// window ("f1s", "s5m", "f1moc"). Changing the number of requests keeps
	// the counter; changing the window or the algorithm starts a new one.
	Tag string
	// Proto is the current_limit of DescriptorStatus (shared, read-only).
	Proto *rlsv3.RateLimitResponse_RateLimit
	// Policy is this limit's item of the RateLimit-Policy header, and
	// SFName its name as a structured-field string.
	Policy string
	SFName string

	bounds atomic.Pointer[windowCache]
}

type windowCache struct{ start, end, prevStart, nextEnd int64 }

// Clock returns the decision clock at now (Unix µs) and, for windowed
// algorithms, the start of the previous window and the end of the next
// (a sliding window's counter serves through the next window, and a
// calendar month's next window may be longer than this one). Window bounds
// are cached until the window ends: calendar windows cost a time zone
// conversion to compute.
func (l *Limit) Clock(now int64) (c algo.Clock, prevStart, nextEnd int64) {
	c.Now = now
	if l.Spec.Kind == algo.GCRA {
		return c, 0, 0
	}
	wc := l.bounds.Load()
	if wc == nil || now < wc.start || now >= wc.end {
		s, e := l.Window.Bounds(now)
		ps, _ := l.Window.Bounds(s - 1)
		_, ne := l.Window.Bounds(e)
		wc = &windowCache{start: s, end: e, prevStart: ps, nextEnd: ne}
		l.bounds.Store(wc)
	}
	c.Start, c.End = wc.start, wc.end
	return c, wc.prevStart, wc.nextEnd
}

// Rule is what applies to a descriptor: its limits and how to answer.
type Rule struct {
	// Index numbers the rules of a snapshot densely from 0, so that the
	// limiter keeps per-rule metrics in a slice.
	Index int
	// ID is a stable, bounded label for metrics and logs:
	// gatehouse/<route>/<tier> or envoyproxy/ratelimit's stats key
	// (<domain>.<key>_<value>...).
	ID     string
	Domain string
	// Tier is the tier a rule of gatehouse's own domain applies to ("*"
	// for the route's default, which applies to every tier not named in
	// its limits or failure modes); empty in envoy config domains.
	Tier   string
	Limits []*Limit
	// Unlimited rules answer OK without counting (unlimited: true).
	Unlimited bool
	// Shadow rules count, log and meter refusals but answer OK.
	Shadow bool
	// QuotaMode answers OK for the descriptor (envoyproxy/ratelimit's
	// quota_mode) while the overall code follows the other descriptors.
	QuotaMode bool
	// FailOpen answers OK when the store cannot decide; otherwise the
	// answer is OVER_LIMIT. In gatehouse's domain it is the rule's tier's
	// mode on its route.
	FailOpen bool
	// CountRefused adds refused hits to the counters, as
	// envoyproxy/ratelimit does; gatehouse's own quotas count only what
	// they admit (all limits of a rule admit or none counts).
	CountRefused bool
	// Name and Replaces are envoyproxy/ratelimit's: a rule whose Name is
	// replaced by another matched rule of the request is skipped.
	Name     string
	Replaces []string
	// DetailedMetric asks for per-value metrics (bounded by the limiter).
	DetailedMetric bool
	// PerValueStats: the reference's stats key depends on the request's
	// values (detailed_metric, or value_to_metric on the rule's path);
	// Domain.StatsKey computes it.
	PerValueStats bool
	// RefKeys keeps the rule's counters under the reference's own Redis
	// keys (reference mode; see ReferenceIdentity).
	RefKeys bool
	// Policy is the RateLimit-Policy header value of all limits.
	Policy string
}

// MissReason says why no rule applies to a descriptor.
type MissReason uint8

// Reasons for a descriptor without a rule.
const (
	// Hit means a rule applies.
	Hit MissReason = iota
	// NoRule: the descriptor matches no configured limit.
	NoRule
	// UnknownRoute: a gatehouse descriptor names a route the config does
	// not have (stale Envoy config during a rollout).
	UnknownRoute
	// NoRouteEntry: a gatehouse descriptor has no route entry.
	NoRouteEntry
)

// String names the reason as a metric label.
func (m MissReason) String() string {
	switch m {
	case Hit:
		return "hit"
	case NoRule:
		return "no_rule"
	case UnknownRoute:
		return "unknown_route"
	case NoRouteEntry:
		return "no_route_entry"
	}
	return "unknown"
}

// newLimit compiles one limit. name is the limit's name in
// RateLimit-Policy and metrics; protoName the current_limit.name Envoy
// receives (and copies into its response headers).
func newLimit(name, protoName string, spec algo.Spec, w algo.Window, unit rlsv3.RateLimitResponse_RateLimit_Unit) *Limit {
	l := &Limit{Name: name, Spec: spec, Window: w}
	var tag strings.Builder
	tag.WriteString(spec.Kind.String()[:1])
	tag.WriteString(strconv.FormatInt(w.Count, 10))
	tag.WriteString(w.Unit.Abbrev())
	if w.Calendar {
		tag.WriteByte('c')
	}
	l.Tag = tag.String()
	rpu := spec.Limit
	if rpu > 1<<32-1 {
		rpu = 1<<32 - 1
	}
	l.Proto = &rlsv3.RateLimitResponse_RateLimit{Name: protoName, RequestsPerUnit: uint32(rpu), Unit: unit}
	l.SFName = sfv.String(name)
	l.Policy = l.SFName + ";q=" + strconv.FormatUint(spec.Limit, 10) + ";w=" + strconv.FormatInt(w.Nominal()/1e6, 10)
	return l
}

func policyOf(limits []*Limit) string {
	parts := make([]string, len(limits))
	for i, l := range limits {
		parts[i] = l.Policy
	}
	return strings.Join(parts, ", ")
}

// AppendIdentityPart appends s to an identity, escaping the separators so
// that different descriptors never share an identity.
func AppendIdentityPart(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|', '=':
			dst = append(dst, '\\', c)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
