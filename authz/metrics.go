package authz

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/authz/mtls"
)

// metrics are the ext_authz server's collectors. Label values are bounded:
// route is a configured route id (or one of the pseudo-routes below),
// decision one of three, reason one of the closed set of codes.
type metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	// observers are latency's children by outcome, resolved once.
	observers [outcomeCount]prometheus.Observer
}

// Pseudo route labels for requests that have no configured route.
const (
	routeUnmatched = "_unmatched" // no route id, and no route matched
	routeUnknown   = "_unknown"   // a route id that is not configured
)

// Decision outcomes, as written in the metric label and the audit line.
const (
	outcomeAllow     = "allow"
	outcomeDeny      = "deny"
	outcomeWouldDeny = "would_deny"
)

type outcome uint8

const (
	allow outcome = iota
	deny
	wouldDeny
	outcomeCount
)

func (o outcome) String() string {
	switch o {
	case allow:
		return outcomeAllow
	case wouldDeny:
		return outcomeWouldDeny
	}
	return outcomeDeny
}

func newMetrics() *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_authz_decisions_total",
			Help: "ext_authz decisions by route, decision (allow, deny, would_deny) and reason code.",
		}, []string{"route", "decision", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gatehouse_authz_check_duration_seconds",
			Help: "Time to decide one Check, by decision.",
			// Decisions are sub-millisecond when cached; a signature check
			// or a JWKS fetch is what the upper buckets show.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"decision"}),
	}
	for o := outcome(0); o < outcomeCount; o++ {
		m.observers[o] = m.latency.WithLabelValues(o.String())
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer, s *Server) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.decisions, m.latency, &stateCollector{s: s}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// counters caches a route's decision counters so that the hot path does
// not hash label values: one slot per (outcome, code), filled on first use.
type counters struct {
	route string
	slots [outcomeCount][core.CodeCount]atomic.Pointer[prometheus.Counter]
}

func (c *counters) inc(m *metrics, o outcome, code core.Code) {
	if code >= core.CodeCount {
		code = core.InternalError
	}
	slot := &c.slots[o][code]
	if p := slot.Load(); p != nil {
		(*p).Inc()
		return
	}
	ctr := m.decisions.WithLabelValues(c.route, o.String(), code.String())
	slot.Store(&ctr)
	ctr.Inc()
}

// stateCollector reports, at scrape time, what the serving engine knows:
// key set health per issuer, token cache and verification counters,
// replay store errors, untrusted XFCC headers, the trust bundles' expiry
// (computed at each scrape, so that a bundle turns expiring with no
// reload).
type stateCollector struct{ s *Server }

var (
	descJWKSUp = prometheus.NewDesc("gatehouse_authz_jwks_up",
		"1 when the issuer's key set is loaded and its last fetch succeeded; 0 while it serves cached keys after a failed fetch, or has none.", []string{"issuer"}, nil)
	descJWKSLoaded = prometheus.NewDesc("gatehouse_authz_jwks_loaded",
		"1 once the issuer's key set can verify tokens.", []string{"issuer"}, nil)
	descJWKSKeys = prometheus.NewDesc("gatehouse_authz_jwks_keys",
		"Keys held for the issuer (static and fetched).", []string{"issuer"}, nil)
	descJWKSLastOK = prometheus.NewDesc("gatehouse_authz_jwks_last_success_timestamp_seconds",
		"When the issuer's JWKS was last fetched successfully.", []string{"issuer"}, nil)
	descJWKSErrors = prometheus.NewDesc("gatehouse_authz_jwks_fetch_errors_total",
		"Failed JWKS and discovery fetches of the issuer's key set, by reason: discovery, insecure_jwks_uri, unreachable, http_status, too_large, malformed, no_usable_key.", []string{"issuer", "reason"}, nil)
	descCache = prometheus.NewDesc("gatehouse_authz_token_cache_total",
		"Verified-token cache lookups by result (hit, miss).", []string{"result"}, nil)
	descCacheEntries = prometheus.NewDesc("gatehouse_authz_token_cache_entries",
		"Tokens in the verified-token cache.", nil, nil)
	descVerifications = prometheus.NewDesc("gatehouse_authz_token_verifications_total",
		"Token signature verifications (cache misses that were not coalesced).", nil, nil)
	descCoalesced = prometheus.NewDesc("gatehouse_authz_token_coalesced_total",
		"Checks that waited for a concurrent verification of the same token instead of verifying it again.", nil, nil)
	descReplayErrors = prometheus.NewDesc("gatehouse_authz_webhook_replay_store_errors_total",
		"Replay-guard store failures, by webhook source (answered by its replayFailureMode).", []string{"source"}, nil)
	descXFCC = prometheus.NewDesc("gatehouse_authz_xfcc_untrusted_total",
		"x-forwarded-client-cert headers ignored because the peer was not a trusted hop of the route.", nil, nil)
	descBundleExpiry = prometheus.NewDesc("gatehouse_authz_mtls_bundle_expiry_timestamp_seconds",
		"When the last authority of the trust domain's bundle expires: from then on no certificate of it verifies.", []string{"trust_domain"}, nil)
	descBundleAuthorities = prometheus.NewDesc("gatehouse_authz_mtls_bundle_authorities",
		"CA certificates in the trust domain's bundle.", []string{"trust_domain"}, nil)
	descBundleState = prometheus.NewDesc("gatehouse_authz_mtls_bundle_state",
		"1 for the state the trust domain's bundle is in (ok, expiring: within its expiryWarning of the expiry, expired), 0 for the others.", []string{"trust_domain", "state"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJWKSUp, descJWKSLoaded, descJWKSKeys, descJWKSLastOK, descJWKSErrors,
		descCache, descCacheEntries, descVerifications, descCoalesced, descReplayErrors, descXFCC,
		descBundleExpiry, descBundleAuthorities, descBundleState} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.s.engine.Load()
	if e == nil {
		return
	}
	if e.jwt != nil {
		for _, h := range e.jwt.Health() {
			up, loaded := 0.0, 0.0
			if h.Loaded {
				loaded = 1
				if h.LastError == "" {
					up = 1
				}
			}
			ch <- prometheus.MustNewConstMetric(descJWKSUp, prometheus.GaugeValue, up, h.Issuer)
			ch <- prometheus.MustNewConstMetric(descJWKSLoaded, prometheus.GaugeValue, loaded, h.Issuer)
			ch <- prometheus.MustNewConstMetric(descJWKSKeys, prometheus.GaugeValue, float64(h.Keys), h.Issuer)
			for reason, n := range h.Errors {
				ch <- prometheus.MustNewConstMetric(descJWKSErrors, prometheus.CounterValue, float64(n), h.Issuer, reason)
			}
			if !h.LastSuccess.IsZero() {
				ch <- prometheus.MustNewConstMetric(descJWKSLastOK, prometheus.GaugeValue, float64(h.LastSuccess.UnixNano())/1e9, h.Issuer)
			}
		}
		st := e.jwt.Stats()
		ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(st.CacheHits), "hit")
		ch <- prometheus.MustNewConstMetric(descCache, prometheus.CounterValue, float64(st.CacheMisses), "miss")
		ch <- prometheus.MustNewConstMetric(descCacheEntries, prometheus.GaugeValue, float64(st.CacheEntries))
		ch <- prometheus.MustNewConstMetric(descVerifications, prometheus.CounterValue, float64(st.Verifications))
		ch <- prometheus.MustNewConstMetric(descCoalesced, prometheus.CounterValue, float64(st.Coalesced))
	}
	for name, w := range e.webhooks {
		ch <- prometheus.MustNewConstMetric(descReplayErrors, prometheus.CounterValue, float64(w.StoreErrors()), name)
	}
	ch <- prometheus.MustNewConstMetric(descXFCC, prometheus.CounterValue, float64(e.mtls.UntrustedXFCC()))
	for _, b := range e.mtls.Bundles(time.Now()) {
		ch <- prometheus.MustNewConstMetric(descBundleExpiry, prometheus.GaugeValue, float64(b.Expires.Unix()), b.TrustDomain)
		ch <- prometheus.MustNewConstMetric(descBundleAuthorities, prometheus.GaugeValue, float64(b.Authorities), b.TrustDomain)
		for _, st := range mtls.BundleStates {
			v := 0.0
			if b.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descBundleState, prometheus.GaugeValue, v, b.TrustDomain, string(st))
		}
	}
}
