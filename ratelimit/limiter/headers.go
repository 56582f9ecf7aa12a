package limiter

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
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

// degradedOpenHeaders go to the upstream with a request admitted without
// a decision (shared, read-only, as the limits' protos are).
var degradedOpenHeaders = []*corev3.HeaderValue{{Key: contract.HeaderRateLimit, Value: contract.RateLimitDegradedOpen}}

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
func (h *headerPick) headers(s Settings, a *answer) []*corev3.HeaderValue {
	if s.Headers == config.HeadersNone || s.Headers == "" {
		return nil
	}
	// A fail-closed answer refuses without a limit to report: a limit
	// that did not refuse (say, a shadow rule's) would tell the client it
	// has room, with no Retry-After.
	if h.rule == nil || (h.degraded && !h.over) {
		if h.degraded {
			return []*corev3.HeaderValue{{Key: HeaderRetryAfter, Value: strconv.FormatInt(ceilSeconds(s.DegradedRetryAfter.Microseconds()), 10)}}
		}
		return nil
	}
	// Every value is written into one buffer and sliced out of one string.
	var buf [160]byte
	b := buf[:0]
	type part struct {
		key        string
		start, end int
	}
	var parts [maxHeaders]part
	n := 0
	add := func(key string, start int) {
		parts[n] = part{key, start, len(b)}
		n++
	}
	remaining := h.out.d.Remaining
	if h.over {
		remaining = 0
	}
	reset := ceilSeconds(h.out.d.Reset)
	ietf := s.Headers == config.HeadersAll || s.Headers == config.HeadersIETF
	legacy := s.Headers == config.HeadersAll || s.Headers == config.HeadersLegacy
	if ietf {
		st := len(b)
		b = append(b, h.out.lim.SFName...)
		b = append(b, ";r="...)
		b = strconv.AppendUint(b, remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, reset, 10)
		add(HeaderRateLimit, st)
	}
	if legacy {
		st := len(b)
		b = strconv.AppendUint(b, h.out.lim.Spec.Limit, 10)
		add(HeaderXLimit, st)
		st = len(b)
		b = strconv.AppendUint(b, remaining, 10)
		add(HeaderXRemaining, st)
		st = len(b)
		b = strconv.AppendInt(b, reset, 10)
		add(HeaderXReset, st)
	}
	if h.over && h.out.d.RetryAfter > 0 {
		st := len(b)
		b = strconv.AppendInt(b, ceilSeconds(h.out.d.RetryAfter), 10)
		add(HeaderRetryAfter, st)
	}
	vals := string(b)
	k := 0
	if ietf {
		a.hdrs[k] = corev3.HeaderValue{Key: HeaderRateLimitPolicy, Value: h.rule.Policy}
		a.hptrs[k] = &a.hdrs[k]
		k++
	}
	for _, p := range parts[:n] {
		a.hdrs[k] = corev3.HeaderValue{Key: p.key, Value: vals[p.start:p.end]}
		a.hptrs[k] = &a.hdrs[k]
		k++
	}
	return a.hptrs[:k:k]
}

// ceilSeconds rounds microseconds up to whole seconds, at least 1: a
// client told 0 would retry at once.
func ceilSeconds(us int64) int64 {
	if us <= 0 {
		return 1
	}
	return max(1, (us+999_999)/1e6)
}
