package config

import (
	"maps"
	"slices"

	"github.com/gatehouse/gatehouse/internal/contract"
)

// RateLimitFailureModes are the rate limiter's answers, per tier, when its
// store cannot decide (Redis down, or slower than ratelimit.store.timeout):
// open lets the request through (OK, marked degraded to the upstream),
// closed refuses it (OVER_LIMIT). Written as one value, `failureMode:
// closed` (or open) sets every tier.
//
// The defaults are Envoy's and envoyproxy/ratelimit's for verified callers
// — a rate limit outage must not take the API down for paying customers —
// and closed for the anonymous tier, the usual source of abuse.
type RateLimitFailureModes struct {
	// Default is the mode of every tier not named in Tiers other than
	// anonymous (the tiers ext_authz verified), and of the
	// envoyproxy/ratelimit config domains, which know no tiers.
	Default FailureMode `yaml:"default" default:"open"`
	// Anonymous is the mode of callers without a verified identity.
	Anonymous FailureMode `yaml:"anonymous" default:"closed"`
	// Tiers set the mode of single tiers, over Default.
	Tiers map[string]FailureMode `yaml:"tiers,omitempty"`
}

// RouteFailureModes override the component's failure modes on one route;
// what they leave out comes from ratelimit.failureMode. Written as one
// value, they set every tier of the route.
type RouteFailureModes struct {
	// Default is the mode of the route's verified tiers, over the
	// component's Default and Tiers.
	Default FailureMode `yaml:"default,omitempty"`
	// Anonymous is the mode of the route's anonymous callers.
	Anonymous FailureMode `yaml:"anonymous,omitempty"`
	// Tiers set the mode of single tiers on the route, over everything
	// else.
	Tiers map[string]FailureMode `yaml:"tiers,omitempty"`
}

// scalarShorthand is a section that may also be written as one scalar;
// the decoder hands such a scalar to fromScalar.
type scalarShorthand interface {
	fromScalar(value string) error
}

func (m *RateLimitFailureModes) fromScalar(v string) error {
	if err := checkEnum(FailureMode(""), v); err != nil {
		return err
	}
	*m = RateLimitFailureModes{Default: FailureMode(v), Anonymous: FailureMode(v)}
	return nil
}

func (m *RouteFailureModes) fromScalar(v string) error {
	if err := checkEnum(FailureMode(""), v); err != nil {
		return err
	}
	*m = RouteFailureModes{Default: FailureMode(v), Anonymous: FailureMode(v)}
	return nil
}

// IsZero reports whether the route overrides nothing.
func (m RouteFailureModes) IsZero() bool {
	return m.Default == "" && m.Anonymous == "" && len(m.Tiers) == 0
}

// For is the failure mode of tier (contract.AnonymousTier for callers
// without a verified identity).
func (m *RateLimitFailureModes) For(tier string) FailureMode {
	if f, ok := m.Tiers[tier]; ok {
		return f
	}
	if tier == contract.AnonymousTier {
		return m.Anonymous
	}
	return m.Default
}

// Named lists the tiers whose mode is set by name, anonymous first, then
// Tiers sorted: every other tier has the Default mode.
func (m *RateLimitFailureModes) Named() []string {
	return append([]string{contract.AnonymousTier}, slices.Sorted(maps.Keys(m.Tiers))...)
}

// with returns the modes of a route that overrides m with r: whatever the
// route sets wins over everything the component sets (its default over
// the component's single tiers too: a route that says its verified tiers
// fail closed means all of them).
func (m RateLimitFailureModes) with(r RouteFailureModes) RateLimitFailureModes {
	out := RateLimitFailureModes{Default: m.Default, Anonymous: m.Anonymous}
	if r.Default == "" {
		out.Tiers = maps.Clone(m.Tiers)
	} else {
		out.Default = r.Default
	}
	if r.Anonymous != "" {
		out.Anonymous = r.Anonymous
	}
	for t, f := range r.Tiers {
		if out.Tiers == nil {
			out.Tiers = map[string]FailureMode{}
		}
		out.Tiers[t] = f
	}
	return out
}

// validateFailureTiers checks the tier names of a failureMode.tiers map.
func validateFailureTiers(p Path, tiers map[string]FailureMode, errs *Errors) {
	for _, name := range sortedKeys(tiers) {
		switch {
		case name == contract.AnonymousTier:
			errs.Add(p.Key(name), "the anonymous tier has a field of its own; write failureMode.anonymous")
		case !TierPattern.MatchString(name):
			errs.Add(p.Key(name), "%q is not a tier; use 1-64 letters, digits, '.', '_' or '-'", name)
		}
	}
}
