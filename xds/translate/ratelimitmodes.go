package translate

import (
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Envoy's rate limit filter has one failure_mode_deny, and the tier of a
// request is known only once ext_authz has answered. So when some tiers
// fail open and others closed, xds renders two rate limit filters, one
// per mode, the second in stage 1 (Envoy's rate limit stages: a filter
// sends only the route's rate limit entries of its own stage). A route
// that needs both carries two entries, gated by the tier header ext_authz
// set (x-gatehouse-tier; the header_mutation filter first in the chain
// removed any copy the client sent): the entry of the filter whose mode
// is the tier's produces the descriptor, the other none, so each request
// is still asked about once.

// Names of the second rate limit filter, by its mode, and its stage.
const (
	filterRateLimitFailOpen   = filterRateLimit + ".fail_open"
	filterRateLimitFailClosed = filterRateLimit + ".fail_closed"
	secondRateLimitStage      = 1
)

// rateLimitFilterName names the rate limit filter of mode when it is the
// second one, and its stat prefix (Envoy's stats are then
// cluster.<cluster>.ratelimit.<prefix>.*, beside the first filter's
// cluster.<cluster>.ratelimit.*).
func rateLimitFilterName(mode config.FailureMode) (name, statPrefix string) {
	if mode == config.FailOpen {
		return filterRateLimitFailOpen, "fail_open"
	}
	return filterRateLimitFailClosed, "fail_closed"
}

// rateLimitModes settles what Envoy does, per route and tier, when the
// rate limit service cannot answer: xds.services.ratelimitFailureMode for
// every route and tier when set, else each route's own modes
// (config.RateLimitNeeds). It returns the mode of the first rate limit
// filter, and whether a second one, of the other mode, is needed.
func (t *translator) rateLimitModes() (config.FailureMode, bool) {
	if t.cfg.RateLimit == nil {
		return "", false
	}
	override := servicesOf(t.cfg).RateLimitFailureMode
	used := map[config.FailureMode]bool{}
	for i := range t.needs {
		n := &t.needs[i].ratelimit
		if !n.Enabled {
			continue
		}
		switch {
		case override != "":
			n.FailureMode, n.Except = override, nil
		case !t.needs[i].authzRuns():
			// Without ext_authz every caller of the route is anonymous.
			if slices.Contains(n.Except, contract.AnonymousTier) {
				n.FailureMode = opposite(n.FailureMode)
			}
			n.Except = nil
		}
		used[n.FailureMode] = true
		if len(n.Except) > 0 {
			used[opposite(n.FailureMode)] = true
		}
	}
	first := override
	switch {
	case first != "":
	case len(used) == 1:
		for m := range used {
			first = m
		}
	default:
		// Both modes, or no route limited: the first filter has the mode
		// of the verified tiers.
		first = t.cfg.RateLimit.FailureMode.Default
	}
	return first, len(used) == 2
}

func opposite(m config.FailureMode) config.FailureMode {
	if m == config.FailOpen {
		return config.FailClosed
	}
	return config.FailOpen
}

// tierMatch is the rate limit action that gates an entry by the caller's
// tier: it appends failure_mode=<mode> when the x-gatehouse-tier header
// is one of tiers (expect) or is not (!expect). A missing header is the
// anonymous tier: ext_authz did not run, or failed open.
func tierMatch(tiers []string, expect bool, mode config.FailureMode) *routev3.RateLimit_Action {
	anon := false
	alts := make([]string, len(tiers))
	for i, tier := range tiers {
		alts[i] = regexp.QuoteMeta(tier)
		anon = anon || tier == contract.AnonymousTier
	}
	re := "(?:" + strings.Join(alts, "|") + ")"
	if anon {
		re += "?"
	}
	return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_HeaderValueMatch_{HeaderValueMatch: &routev3.RateLimit_Action_HeaderValueMatch{
		DescriptorKey:   contract.DescriptorFailureMode,
		DescriptorValue: string(mode),
		ExpectMatch:     wrapperspb.Bool(expect),
		Headers: []*routev3.HeaderMatcher{{
			Name: contract.HeaderTier,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}},
			}},
			TreatMissingHeaderAsEmpty: anon,
		}},
	}}}
}
