package limiter

import (
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/ratelimit/quota"
)

// refMetrics exposes envoyproxy/ratelimit's per-rule counters of the envoy
// config domains under the names its Prometheus exporter gives them (the
// reference's statsd_exporter default mapping), so that a dashboard built
// for the reference keeps working:
//
//	ratelimit_service_rate_limit_{total_hits,over_limit,near_limit,within_limit,shadow_mode}{domain,key1[,key2]}
//	ratelimit_service_should_rate_limit_error{err_type}
//	ratelimit_service_config_load_success, ratelimit_service_config_load_error
//
// The reference counts hits, not requests, by its stats key
// (<domain>.<key>_<value>…): key1 and key2 are its first two levels, and
// deeper levels add to their series, as the mapping does. Like the
// reference's exporter a family mixes series with and without key2, so
// the collector is unchecked. Cardinality is bounded: a rule's series per
// value (detailed_metric, value_to_metric) and a domain's per override are
// at most maxDetailed, beyond which hits go to the rule's own series (or
// the domain's "limit_override" series).
type refMetrics struct {
	mu       sync.Mutex
	series   map[string]*refSeries // by stats key
	byLabels map[string]*refSeries // the same series by their labels

	configLoadSuccess, configLoadError atomic.Uint64
	redisError, serviceError           atomic.Uint64
}

// refSeries are one stats key's counters.
type refSeries struct {
	labels                                                 []string // domain, key1[, key2]
	totalHits, overLimit, nearLimit, withinLimit, shadowed atomic.Uint64
}

// refRule binds a rule (or a domain's overrides) to its series.
type refRule struct {
	base *refSeries
	mu   sync.Mutex
	more map[string]*refSeries // per-value stats keys
}

var (
	refCounterNames = [...]string{"total_hits", "over_limit", "near_limit", "within_limit", "shadow_mode"}
	// refDescs are the counters' descriptions by number of labels.
	refDescs       = map[int][len(refCounterNames)]*prometheus.Desc{2: refCounterDescs("domain", "key1"), 3: refCounterDescs("domain", "key1", "key2")}
	refErrorDesc   = prometheus.NewDesc("ratelimit_service_should_rate_limit_error", "ShouldRateLimit errors by type, as envoyproxy/ratelimit's ratelimit.service.call.should_rate_limit.<err_type>.", []string{"err_type"}, nil)
	refLoadOKDesc  = prometheus.NewDesc("ratelimit_service_config_load_success", "Rate limit configs applied, as envoyproxy/ratelimit's ratelimit.service.config_load_success.", nil, nil)
	refLoadErrDesc = prometheus.NewDesc("ratelimit_service_config_load_error", "Rate limit configs rejected, as envoyproxy/ratelimit's ratelimit.service.config_load_error.", nil, nil)
	ipv4InStatName = regexp.MustCompile(`\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`)
)

func refCounterDescs(labels ...string) (out [len(refCounterNames)]*prometheus.Desc) {
	for i, n := range refCounterNames {
		out[i] = prometheus.NewDesc("ratelimit_service_rate_limit_"+n, "envoyproxy/ratelimit's per-rule counter ratelimit.service.rate_limit.<stats key>."+n+" (hits).", labels, nil)
	}
	return out
}

func newRefMetrics() *refMetrics {
	return &refMetrics{series: map[string]*refSeries{}, byLabels: map[string]*refSeries{}}
}

// Describe implements prometheus.Collector; it sends nothing, so the
// collector is unchecked and its families may mix label sets.
func (m *refMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *refMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	all := make([]*refSeries, 0, len(m.series))
	for _, s := range m.series {
		all = append(all, s)
	}
	m.mu.Unlock()
	seen := map[*refSeries]bool{}
	for _, s := range all {
		if seen[s] {
			continue // several stats keys with the same labels
		}
		seen[s] = true
		descs := refDescs[len(s.labels)]
		for i, v := range []*atomic.Uint64{&s.totalHits, &s.overLimit, &s.nearLimit, &s.withinLimit, &s.shadowed} {
			ch <- prometheus.MustNewConstMetric(descs[i], prometheus.CounterValue, float64(v.Load()), s.labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(refErrorDesc, prometheus.CounterValue, float64(m.redisError.Load()), "redis_error")
	ch <- prometheus.MustNewConstMetric(refErrorDesc, prometheus.CounterValue, float64(m.serviceError.Load()), "service_error")
	ch <- prometheus.MustNewConstMetric(refLoadOKDesc, prometheus.CounterValue, float64(m.configLoadSuccess.Load()))
	ch <- prometheus.MustNewConstMetric(refLoadErrDesc, prometheus.CounterValue, float64(m.configLoadError.Load()))
}

// refLabels maps a stats key to the labels the reference's exporter gives
// it: the key is sanitized as the reference does (':' and '|' to '_', the
// dots of IPv4 addresses to '_'), then split on dots: domain and key1 for
// two parts, domain, key1 and key2 for more. nil for a key the mapping
// does not match.
func refLabels(key string) []string {
	key = strings.NewReplacer(":", "_", "|", "_").Replace(key)
	key = ipv4InStatName.ReplaceAllStringFunc(key, func(ip string) string { return strings.ReplaceAll(ip, ".", "_") })
	parts := strings.SplitN(key, ".", 4)
	if len(parts) < 2 {
		return nil
	}
	out := make([]string, min(len(parts), 3))
	for i := range out {
		out[i] = truncate(parts[i], maxDetailedLabel)
	}
	return out
}

// get returns the series of a stats key, creating it; nil when the key
// maps to no series.
func (m *refMetrics) get(key string) *refSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.series[key]; ok {
		return s
	}
	labels := refLabels(key)
	if labels == nil {
		return nil
	}
	// Keys that sanitize to the same labels share a series, as they share
	// one in the reference's exporter.
	lk := strings.Join(labels, "\x00")
	s := m.byLabels[lk]
	if s == nil {
		s = &refSeries{labels: labels}
		m.byLabels[lk] = s
	}
	m.series[key] = s
	return s
}

// bind resolves the series of every envoy rule of snap (nil for
// gatehouse's own rules), keeping the per-value series of the rules prev
// had too, and drops the series no rule holds any more.
func (m *refMetrics) bind(snap, prev *quota.Snapshot, prevRules []*refRule, prevOverrides map[string]*refRule) ([]*refRule, map[string]*refRule) {
	old := map[string]*refRule{}
	if prev != nil {
		for i, r := range prev.Rules {
			if i < len(prevRules) && prevRules[i] != nil {
				old[r.Domain+"\x00"+r.ID] = prevRules[i]
			}
		}
	}
	rules := make([]*refRule, len(snap.Rules))
	for i, r := range snap.Rules {
		if d, ok := snap.Domain(r.Domain); !ok || d.IsNative() || r.Unlimited {
			continue
		}
		if o := old[r.Domain+"\x00"+r.ID]; o != nil {
			rules[i] = o
			continue
		}
		rules[i] = &refRule{base: m.get(r.ID)}
	}
	overrides := map[string]*refRule{}
	for _, name := range snap.DomainNames() {
		if d, _ := snap.Domain(name); d.IsNative() {
			continue
		}
		if o := prevOverrides[name]; o != nil {
			overrides[name] = o
		} else {
			overrides[name] = &refRule{base: m.get(name + ".limit_override")}
		}
	}
	live := map[*refSeries]bool{}
	hold := func(rr *refRule) {
		if rr == nil {
			return
		}
		live[rr.base] = true
		rr.mu.Lock()
		for _, s := range rr.more {
			live[s] = true
		}
		rr.mu.Unlock()
	}
	for _, rr := range rules {
		hold(rr)
	}
	for _, rr := range overrides {
		hold(rr)
	}
	m.mu.Lock()
	for k, s := range m.series {
		if !live[s] {
			delete(m.series, k)
			delete(m.byLabels, strings.Join(s.labels, "\x00"))
		}
	}
	m.mu.Unlock()
	return rules, overrides
}

// of returns the series of one stats key of the rule: the rule's own for
// its own key, a per-value one for the first maxDetailed others, then the
// rule's own again.
func (rr *refRule) of(m *refMetrics, key string) *refSeries {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if s, ok := rr.more[key]; ok {
		return s
	}
	if len(rr.more) >= maxDetailed {
		return rr.base
	}
	s := m.get(key)
	if s == nil {
		return rr.base
	}
	if rr.more == nil {
		rr.more = map[string]*refSeries{}
	}
	rr.more[key] = s
	return s
}

// refOutcome is what the reference's counters need of one descriptor.
type refOutcome struct {
	hits, before, after, limit uint64
	local, shadow              bool
}

// count adds one descriptor's hits as the reference's base limiter does:
// a hit is over_limit past the limit, near_limit past limit·ratio
// (float32, as the reference computes it), else within_limit, split
// between them when a request of several hits straddles a threshold.
func (s *refSeries) count(o refOutcome, ratio float32) {
	if s == nil {
		return
	}
	s.totalHits.Add(o.hits)
	if o.local {
		s.overLimit.Add(o.hits)
		if o.shadow {
			s.shadowed.Add(o.hits)
		}
		return
	}
	near := uint64(math.Floor(float64(float32(o.limit) * ratio)))
	if o.after > o.limit {
		if o.before >= o.limit {
			s.overLimit.Add(o.hits)
		} else {
			s.overLimit.Add(o.after - o.limit)
			s.nearLimit.Add(o.limit - max(near, o.before))
		}
		if o.shadow {
			if o.before >= o.limit {
				s.shadowed.Add(o.hits)
			} else {
				s.shadowed.Add(o.after - o.limit)
			}
		}
		return
	}
	s.withinLimit.Add(o.hits)
	if o.after > near {
		if o.before >= near {
			s.nearLimit.Add(o.hits)
		} else {
			s.nearLimit.Add(o.after - near)
		}
	}
}
