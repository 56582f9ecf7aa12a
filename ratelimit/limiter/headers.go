package limiter

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
)

// Response header names. Envoy adds response_headers_to_add to the
// response the client gets, the 429 and the upstream's answer alike.
const (
	HeaderRateLimit       = "ratelimit"
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderXLimit          = "x-ratelimit-limit"
	HeaderXRemaining      = "x-ratelimit-remaining"
	HeaderXReset          = "x-ratelimit-reset"
	HeaderRetryAfter      = "retry-after"
)

// headerPick keeps the limit the client should hear about: a refusing one
// (the latest to free up), else the one closest to refusing.
type headerPick struct {
	rule     *quota.Rule
	out      limitOutcome
	over     bool
	degraded bool
}

func (h *headerPick) consider(rule *quota.Rule, o limitOutcome, over bool) {
	switch {
	case h.rule == nil, over && !h.over:
	case over && h.out.d.RetryAfter >= 0 && (o.d.RetryAfter < 0 || o.d.RetryAfter > h.out.d.RetryAfter):
	case !over && !h.over && o.d.Remaining < h.out.d.Remaining:
	default:
		return
	}
	h.rule, h.out, h.over = rule, o, over
}

// headers renders the picked limit: IETF RateLimit and RateLimit-Policy
// (draft-ietf-httpapi-ratelimit-headers), X-RateLimit-Limit/Remaining/Reset
// (seconds until reset), and Retry-After on a refusal.
func (h *headerPick) headers(s Settings) []*corev3.HeaderValue {
	if s.Headers == config.HeadersNone || s.Headers == "" {
		return nil
	}
	if h.rule == nil {
		if h.degraded {
			return []*corev3.HeaderValue{{Key: HeaderRetryAfter, Value: strconv.FormatInt(ceilSeconds(s.DegradedRetryAfter.Microseconds()), 10)}}
		}
		return nil
	}
	vals := make([]corev3.HeaderValue, 0, 6)
	reset := strconv.FormatInt(ceilSeconds(h.out.d.Reset), 10)
	remaining := strconv.FormatUint(h.out.d.Remaining, 10)
	if h.over {
		remaining = "0"
	}
	if s.Headers == config.HeadersAll || s.Headers == config.HeadersIETF {
		vals = append(vals,
			corev3.HeaderValue{Key: HeaderRateLimitPolicy, Value: h.rule.Policy},
			corev3.HeaderValue{Key: HeaderRateLimit, Value: h.out.lim.SFName + ";r=" + remaining + ";t=" + reset})
	}
	if s.Headers == config.HeadersAll || s.Headers == config.HeadersLegacy {
		vals = append(vals,
			corev3.HeaderValue{Key: HeaderXLimit, Value: strconv.FormatUint(h.out.lim.Spec.Limit, 10)},
			corev3.HeaderValue{Key: HeaderXRemaining, Value: remaining},
			corev3.HeaderValue{Key: HeaderXReset, Value: reset})
	}
	if h.over && h.out.d.RetryAfter > 0 {
		vals = append(vals, corev3.HeaderValue{Key: HeaderRetryAfter, Value: strconv.FormatInt(ceilSeconds(h.out.d.RetryAfter), 10)})
	}
	out := make([]*corev3.HeaderValue, len(vals))
	for i := range vals {
		out[i] = &vals[i]
	}
	return out
}

// ceilSeconds rounds microseconds up to whole seconds, at least 1: a
// client told 0 would retry at once.
func ceilSeconds(us int64) int64 {
	if us <= 0 {
		return 1
	}
	return max(1, (us+999_999)/1e6)
}
