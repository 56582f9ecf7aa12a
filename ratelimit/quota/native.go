package quota

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/routematch"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// nativeDomain is gatehouse's own domain: descriptors of entries route,
// tier and subject (internal/contract), then a route's header entries.
type nativeDomain struct {
	routes *routematch.Resolver[*nativeRoute]
}

type nativeRoute struct {
	id    string
	tiers map[string]*Rule // a nil rule: the tier is unlimited here
	// def is the rule of any other tier; nil when they are unlimited.
	def   *Rule
	keyBy config.KeyBy
}

// compileNative builds gatehouse's domain, or nil when no route is limited.
func compileNative(cfg *config.Config, loc *time.Location, add func(*Rule) *Rule) *nativeDomain {
	byID := make(map[string]*nativeRoute, len(cfg.Routes))
	limited := false
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		e := r.EffectiveRateLimit(cfg)
		if e == nil {
			// Known but not limited: Envoy should not ask, and when a
			// hand-written config does, the answer is OK.
			byID[r.ID] = &nativeRoute{id: r.ID}
			continue
		}
		limited = true
		nr := &nativeRoute{id: r.ID, tiers: map[string]*Rule{}, keyBy: e.KeyBy}
		for _, tier := range sortedNames(e.Tiers) {
			limits := e.Tiers[tier]
			if len(limits) == 0 {
				nr.tiers[tier] = nil
				continue
			}
			nr.tiers[tier] = add(nativeRule(r.ID, tier, tier, limits, e, loc))
		}
		if len(e.Default) > 0 {
			nr.def = add(nativeRule(r.ID, "*", "default", e.Default, e, loc))
			// A tier whose failure mode is set by name (anonymous always)
			// but whose limits are the default ones gets a rule of its
			// own: the same limits and counters, its own mode, and its
			// own series in the metrics.
			for _, tier := range e.FailureMode.Named() {
				if _, listed := nr.tiers[tier]; !listed {
					nr.tiers[tier] = add(nr.def.forTier(tier, e.FailureMode.For(tier)))
				}
			}
		}
		byID[r.ID] = nr
	}
	if !limited {
		return nil
	}
	return &nativeDomain{routes: routematch.NewResolver(cfg.Routes, byID, contract.RateLimitUnknownRoute)}
}

func nativeRule(route, tierLabel, namePrefix string, limits []config.Limit, e *config.EffectiveRateLimit, loc *time.Location) *Rule {
	r := &Rule{
		ID:       contract.RateLimitDomain + "/" + route + "/" + tierLabel,
		Domain:   contract.RateLimitDomain,
		Tier:     tierLabel,
		Shadow:   e.Shadow,
		FailOpen: e.FailureMode.For(tierLabel) == config.FailOpen,
	}
	for _, l := range limits {
		r.Limits = append(r.Limits, compileLimit(l, namePrefix, e.Algorithm, loc))
	}
	r.Policy = policyOf(r.Limits)
	return r
}

// forTier is a copy of a route's default rule for one tier, with that
// tier's failure mode. The limits are shared: a counter's key names the
// tier, not the rule.
func (r *Rule) forTier(tier string, mode config.FailureMode) *Rule {
	c := *r
	c.ID = strings.TrimSuffix(r.ID, "*") + tier
	c.Tier = tier
	c.FailOpen = mode == config.FailOpen
	return &c
}

// compileLimit turns a config limit into a Limit.
func compileLimit(l config.Limit, namePrefix string, defAlg config.RateLimitAlgorithm, loc *time.Location) *Limit {
	alg := l.Algorithm
	if alg == "" {
		alg = defAlg
	}
	w := algo.Window{Count: int64(l.Per.Count), Unit: l.Per.Unit, Calendar: l.Calendar, Loc: loc}
	var spec algo.Spec
	switch alg {
	case config.AlgorithmGCRA:
		spec = algo.NewGCRA(l.Requests, l.Burst, w.Nominal())
	case config.AlgorithmSliding:
		spec = algo.Spec{Kind: algo.Sliding, Limit: l.Requests}
	default:
		spec = algo.Spec{Kind: algo.Fixed, Limit: l.Requests}
	}
	name := l.Name
	if name == "" {
		name = namePrefix + "-" + strconv.FormatInt(w.Count, 10) + w.Unit.Abbrev()
		if w.Calendar {
			name += "-calendar"
		}
		if spec.Kind != algo.Fixed {
			name += "-" + spec.Kind.String()
		}
	}
	unit := rlsv3.RateLimitResponse_RateLimit_UNKNOWN
	if w.Count == 1 {
		unit = protoUnit(w.Unit)
	}
	return newLimit(name, name, spec, w, unit)
}

// protoUnits are the RLS response's units, by unit.
var protoUnits = [...]rlsv3.RateLimitResponse_RateLimit_Unit{
	algo.Second: rlsv3.RateLimitResponse_RateLimit_SECOND,
	algo.Minute: rlsv3.RateLimitResponse_RateLimit_MINUTE,
	algo.Hour:   rlsv3.RateLimitResponse_RateLimit_HOUR,
	algo.Day:    rlsv3.RateLimitResponse_RateLimit_DAY,
	algo.Week:   rlsv3.RateLimitResponse_RateLimit_WEEK,
	algo.Month:  rlsv3.RateLimitResponse_RateLimit_MONTH,
	algo.Year:   rlsv3.RateLimitResponse_RateLimit_YEAR,
}

// protoUnit is u as the RLS response names it (UNKNOWN for no unit).
func protoUnit(u algo.Unit) rlsv3.RateLimitResponse_RateLimit_Unit {
	if !u.Valid() {
		return rlsv3.RateLimitResponse_RateLimit_UNKNOWN
	}
	return protoUnits[u]
}

// match reads a gatehouse descriptor. A missing tier entry is the
// anonymous tier; a missing key entry (say, no subject) is the empty
// value, so such requests share one counter rather than go unlimited.
func (nd *nativeDomain) match(entries []*ratelimitv3.RateLimitDescriptor_Entry, key []byte) (*Rule, []byte, MissReason, error) {
	var route, tier *ratelimitv3.RateLimitDescriptor_Entry
	for i, e := range entries {
		switch e.GetKey() {
		case contract.DescriptorRoute:
			if route != nil {
				return nil, key, NoRule, fmt.Errorf("%w: duplicate entry %q (entries %d and %d)", ErrBadDescriptor, e.GetKey(), indexOf(entries, route), i)
			}
			route = e
		case contract.DescriptorTier:
			if tier != nil {
				return nil, key, NoRule, fmt.Errorf("%w: duplicate entry %q (entries %d and %d)", ErrBadDescriptor, e.GetKey(), indexOf(entries, tier), i)
			}
			tier = e
		default:
			for j := 0; j < i; j++ {
				if entries[j].GetKey() == e.GetKey() {
					return nil, key, NoRule, fmt.Errorf("%w: duplicate entry %q (entries %d and %d)", ErrBadDescriptor, e.GetKey(), j, i)
				}
			}
		}
	}
	if route == nil {
		return nil, key, NoRouteEntry, nil
	}
	// No request to match here: an unknown id is ignored (answered OK),
	// as contract.RateLimitUnknownRoute says.
	nr, _, _, _ := nd.routes.Resolve(nil, route.GetValue())
	if nr == nil {
		return nil, key, UnknownRoute, nil
	}
	tierName := contract.AnonymousTier
	if tier != nil && tier.GetValue() != "" {
		tierName = tier.GetValue()
	}
	rule, listed := nr.tiers[tierName]
	if !listed {
		rule = nr.def
	}
	if rule == nil {
		return nil, key, NoRule, nil
	}
	key = append(key, contract.RateLimitDomain...)
	key = append(key, '|')
	key = AppendIdentityPart(key, nr.id)
	key = append(key, '|')
	key = AppendIdentityPart(key, tierName)
	if nr.keyBy.PerCaller() {
		key = append(key, '|')
		key = AppendIdentityPart(key, string(nr.keyBy))
		key = append(key, '=')
		for _, e := range entries {
			if e.GetKey() == string(nr.keyBy) {
				key = AppendIdentityPart(key, e.GetValue())
				break
			}
		}
	}
	return rule, key, Hit, nil
}

func indexOf(entries []*ratelimitv3.RateLimitDescriptor_Entry, e *ratelimitv3.RateLimitDescriptor_Entry) int {
	for i := range entries {
		if entries[i] == e {
			return i
		}
	}
	return -1
}
