package limiter

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/ratelimit/quota"
)

// Decision is the outcome of one descriptor, a closed set that is the
// metric label, the log field and the reason of the answer.
type Decision uint8

// Decisions.
const (
	// DecisionOK: within every limit.
	DecisionOK Decision = iota
	// DecisionOverLimit: refused by a limit (counted in the store).
	DecisionOverLimit
	// DecisionOverLimitLocal: refused from the local over-limit cache,
	// without a round trip.
	DecisionOverLimitLocal
	// DecisionShadow: a shadow rule would have refused; answered OK.
	DecisionShadow
	// DecisionQuotaMode: an envoy quota_mode rule is over; OK for the
	// descriptor, reported in the status.
	DecisionQuotaMode
	// DecisionUnlimited: an envoy unlimited rule.
	DecisionUnlimited
	// DecisionDegradedOpen / DecisionDegradedClosed: the store could not
	// decide and the rule's failure mode answered.
	DecisionDegradedOpen
	DecisionDegradedClosed
	// DecisionDegradedError: the store could not decide and, in reference
	// mode, the request was answered with an error, as the reference does.
	DecisionDegradedError
	// DecisionRefund: hits given back (is_negative_hits).
	DecisionRefund
	numDecisions
)

var decisionNames = [numDecisions]string{"ok", "over_limit", "over_limit_local", "shadow_over_limit", "quota_over_limit", "unlimited", "degraded_open", "degraded_closed", "degraded_error", "refund"}

// String is the metric label.
func (d Decision) String() string {
	if d >= numDecisions {
		return "unknown"
	}
	return decisionNames[d]
}

// Metrics of the limiter, registered once per process.
type Metrics struct {
	decisions *prometheus.CounterVec
	// degraded counts the degraded decisions again by tier and mode, for
	// a dashboard of who a store outage lets through or refuses.
	degraded  *prometheus.CounterVec
	unmatched *prometheus.CounterVec
	requests  *prometheus.CounterVec
	invalid   *prometheus.CounterVec
	hits      *prometheus.CounterVec
	unknown   *prometheus.CounterVec
	// negativeCharged counts is_negative_hits descriptors charged as
	// ordinary hits (reference mode).
	negativeCharged prometheus.Counter
	// ref are envoyproxy/ratelimit's own per-rule counters.
	ref *refMetrics

	unknownMu   sync.Mutex
	unknownSeen map[string]prometheus.Counter
}

// maxUnknownDomains bounds the domain label of unknown-domain requests:
// Envoy sends the domains of its own config, a handful, but a client of
// the RLS port could send any.
const maxUnknownDomains = 100

// unknownDomain is the counter of requests for an undeclared domain: one
// series per domain for the first maxUnknownDomains, then "other".
func (m *Metrics) unknownDomain(domain string) prometheus.Counter {
	m.unknownMu.Lock()
	defer m.unknownMu.Unlock()
	if c, ok := m.unknownSeen[domain]; ok {
		return c
	}
	label := truncate(domain, 128)
	if len(m.unknownSeen) >= maxUnknownDomains {
		label = "other"
	}
	c := m.unknown.WithLabelValues(label)
	if label != "other" {
		m.unknownSeen[domain] = c
	}
	return c
}

// NewMetrics registers the limiter metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_decisions_total",
			Help: "Descriptors decided, by domain, rule and decision (ok, over_limit, over_limit_local, shadow_over_limit, quota_over_limit, unlimited, degraded_open, degraded_closed, degraded_error, refund).",
		}, []string{"domain", "rule", "decision"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_degraded_total",
			Help: "Descriptors answered without the store (down, too slow, or its breaker open), by domain, tier (a tier of gatehouse's domain, \"*\" for one that takes a route's default limits, empty in envoy config domains) and mode (open: let through, closed: refused, error: answered with an error in reference mode).",
		}, []string{"domain", "tier", "mode"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_hits_total",
			Help: "Hits (hits_addend) of descriptors with a limit, by domain and rule.",
		}, []string{"domain", "rule"}),
		unmatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_unmatched_descriptors_total",
			Help: "Descriptors no limit applies to, by domain and reason (no_rule, unknown_route, no_route_entry).",
		}, []string{"domain", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_requests_total",
			Help: "ShouldRateLimit answers by domain and overall code (ok, over_limit).",
		}, []string{"domain", "code"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_invalid_requests_total",
			Help: "Requests refused with InvalidArgument, by reason.",
		}, []string{"reason"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_unknown_domain_requests_total",
			Help: "Requests for a domain no config declares, answered OK as the reference does, by domain (at most 100 domains, then \"other\").",
		}, []string{"domain"}),
		negativeCharged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_negative_hits_charged_total",
			Help: "Descriptors with is_negative_hits charged as ordinary hits, as the pinned reference does (reference mode only).",
		}),
		unknownSeen: map[string]prometheus.Counter{},
		ref:         newRefMetrics(),
	}
	for _, c := range []prometheus.Collector{m.decisions, m.degraded, m.hits, m.unmatched, m.requests, m.invalid, m.unknown, m.negativeCharged, m.ref} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ruleMetrics are a rule's counters, resolved once per config.
type ruleMetrics struct {
	decisions [numDecisions]prometheus.Counter
	// degraded are the rule's tier's degraded counters, by the decisions
	// DecisionDegradedOpen, DecisionDegradedClosed, DecisionDegradedError.
	degraded [3]prometheus.Counter
	hits     prometheus.Counter
}

// degradedModes label the degraded decisions, in their order.
var degradedModes = [3]string{"open", "closed", "error"}

// count counts a decision, and a degraded one also by tier and mode.
func (rm *ruleMetrics) count(d Decision) {
	rm.decisions[d].Inc()
	if d >= DecisionDegradedOpen && d <= DecisionDegradedError {
		rm.degraded[d-DecisionDegradedOpen].Inc()
	}
}

// domainMetrics are a domain's counters, resolved once per config.
type domainMetrics struct {
	requests  [2]prometheus.Counter // ok, over_limit
	unmatched [4]prometheus.Counter // by quota.MissReason
	// override meters descriptors carrying Envoy's limit override.
	override *ruleMetrics
}

// bind resolves the counters of every rule and domain of snap, and drops
// the series of rules the previous snapshot had and this one has not.
func (m *Metrics) bind(snap, prev *quota.Snapshot) ([]*ruleMetrics, map[string]*domainMetrics) {
	rules := make([]*ruleMetrics, len(snap.Rules))
	for i, r := range snap.Rules {
		rules[i] = m.rule(r.Domain, r.ID, r.Tier)
	}
	doms := map[string]*domainMetrics{}
	for _, name := range snap.DomainNames() {
		dm := &domainMetrics{override: m.rule(name, name+":override", "")}
		dm.requests[0] = m.requests.WithLabelValues(name, "ok")
		dm.requests[1] = m.requests.WithLabelValues(name, "over_limit")
		for _, reason := range []quota.MissReason{quota.NoRule, quota.UnknownRoute, quota.NoRouteEntry} {
			dm.unmatched[reason] = m.unmatched.WithLabelValues(name, reason.String())
		}
		doms[name] = dm
	}
	if prev != nil {
		keep := map[[2]string]bool{}
		tiers := map[[2]string]bool{}
		for _, r := range snap.Rules {
			keep[[2]string{r.Domain, r.ID}] = true
			tiers[[2]string{r.Domain, r.Tier}] = true
		}
		for _, r := range prev.Rules {
			if !keep[[2]string{r.Domain, r.ID}] {
				m.decisions.DeletePartialMatch(prometheus.Labels{"domain": r.Domain, "rule": r.ID})
				m.hits.DeleteLabelValues(r.Domain, r.ID)
			}
			if !tiers[[2]string{r.Domain, r.Tier}] {
				m.degraded.DeletePartialMatch(prometheus.Labels{"domain": r.Domain, "tier": r.Tier})
			}
		}
	}
	return rules, doms
}

func (m *Metrics) rule(domain, id, tier string) *ruleMetrics {
	rm := &ruleMetrics{hits: m.hits.WithLabelValues(domain, id)}
	for d := Decision(0); d < numDecisions; d++ {
		rm.decisions[d] = m.decisions.WithLabelValues(domain, id, d.String())
	}
	for i, mode := range degradedModes {
		rm.degraded[i] = m.degraded.WithLabelValues(domain, tier, mode)
	}
	return rm
}

// detailed meters envoy rules with detailed_metric: true per descriptor
// value, as the reference does, but at most maxDetailed series per rule
// (beyond that, under "<rule>:other"), so that a client sending fresh
// values cannot grow the metrics without bound.
type detailed struct {
	mu   sync.Mutex
	seen map[string]*ruleMetrics
}

const maxDetailed = 1000

// maxDetailedLabel bounds the bytes of a per-value rule label.
const maxDetailedLabel = 256

// bindDetailed gives each detailed_metric rule of snap its per-value
// series: those of the rule of the same domain and ID in the previous
// snapshot, so that reloads do not reset the bound of maxDetailed series
// per rule; the series of detailed rules that are gone are dropped.
func (m *Metrics) bindDetailed(snap, prev *quota.Snapshot, prevDetailed []*detailed) []*detailed {
	old := map[[2]string]*detailed{}
	if prev != nil {
		for i, r := range prev.Rules {
			if r.DetailedMetric && i < len(prevDetailed) && prevDetailed[i] != nil {
				old[[2]string{r.Domain, r.ID}] = prevDetailed[i]
			}
		}
	}
	out := make([]*detailed, len(snap.Rules))
	for i, r := range snap.Rules {
		if !r.DetailedMetric {
			continue
		}
		k := [2]string{r.Domain, r.ID}
		if d := old[k]; d != nil {
			out[i] = d
			delete(old, k)
		} else {
			out[i] = &detailed{}
		}
	}
	for k, d := range old {
		d.mu.Lock()
		for id := range d.seen {
			m.decisions.DeletePartialMatch(prometheus.Labels{"domain": k[0], "rule": truncate(id, maxDetailedLabel)})
			m.hits.DeleteLabelValues(k[0], truncate(id, maxDetailedLabel))
		}
		d.mu.Unlock()
	}
	return out
}
