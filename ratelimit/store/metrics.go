package store

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the Redis store. They are registered once per process (a
// reload that rebuilds the store reuses them); every method is nil-safe.
type Metrics struct {
	roundTrips   *prometheus.CounterVec
	roundTripSec prometheus.Histogram
	calls        prometheus.Counter
	errors       *prometheus.CounterVec
	transitions  *prometheus.CounterVec
	state        *prometheus.GaugeVec
	redirects    *prometheus.CounterVec
	probes       *prometheus.CounterVec
}

// NewMetrics registers the store metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		roundTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_round_trips_total",
			Help: "Redis round trips of the rate limit store, by result (ok, error). Calls the circuit breaker refused are not round trips: see errors_total{reason=\"breaker_open\"}.",
		}, []string{"result"}),
		roundTripSec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_ratelimit_store_round_trip_seconds",
			Help:    "Duration of one Redis round trip of the rate limit store (a batch of requests to one node).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		calls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_batched_calls_total",
			Help: "RLS requests sent to Redis (a request is one call per node its descriptors live on); divided by round trips, the mean batch size.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_errors_total",
			Help: "Store failures by reason: timeout, error (Redis answered an error or the connection failed), not_replicated (fewer replicas than store.wait.replicas acknowledged), breaker_open (calls refused by an open or half-open circuit breaker, never sent).",
		}, []string{"reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_breaker_transitions_total",
			Help: "Circuit breaker state changes, by Redis node and new state.",
		}, []string{"node", "to"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_ratelimit_store_breaker_state",
			Help: "1 for the current state (closed, half-open, open) of each Redis node's circuit breaker.",
		}, []string{"node", "state"}),
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_redirects_total",
			Help: "Redis Cluster answers that an op was not run where it was sent, by kind (moved, ask, tryagain); the op alone is sent again.",
		}, []string{"kind"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_probes_total",
			Help: "Background writes to a Redis node that no request reached lately, which keep readiness current, by result (ok, error).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.roundTrips, m.roundTripSec, m.calls, m.errors, m.transitions, m.state, m.redirects, m.probes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"ok", "error"} {
		m.roundTrips.WithLabelValues(r)
		m.probes.WithLabelValues(r)
	}
	for _, r := range []string{"timeout", "error", "not_replicated", "breaker_open"} {
		m.errors.WithLabelValues(r)
	}
	for _, r := range []string{"moved", "ask", "tryagain"} {
		m.redirects.WithLabelValues(r)
	}
	return m, nil
}

// roundTrip counts a round trip that was sent (err is its failure, if
// it failed as a whole).
func (m *Metrics) roundTrip(d time.Duration, calls int, err error) {
	if m == nil {
		return
	}
	m.calls.Add(float64(calls))
	if err == nil {
		m.roundTrips.WithLabelValues("ok").Inc()
		m.roundTripSec.Observe(d.Seconds())
		return
	}
	m.roundTrips.WithLabelValues("error").Inc()
	switch {
	case errors.Is(err, ErrNotReplicated):
		m.errors.WithLabelValues("not_replicated").Inc()
	case isTimeout(err):
		m.errors.WithLabelValues("timeout").Inc()
	default:
		m.errors.WithLabelValues("error").Inc()
	}
}

// refused counts calls the breaker refused: nothing was sent.
func (m *Metrics) refused(calls int) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues("breaker_open").Add(float64(calls))
}

func (m *Metrics) redirect(kind string) {
	if m == nil {
		return
	}
	m.redirects.WithLabelValues(kind).Inc()
}

func (m *Metrics) probe(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.probes.WithLabelValues("error").Inc()
		return
	}
	m.probes.WithLabelValues("ok").Inc()
}

func (m *Metrics) breakerState(node, from, to string) {
	if m == nil {
		return
	}
	if from != "" {
		m.transitions.WithLabelValues(node, to).Inc()
	}
	for _, s := range []string{"closed", "half-open", "open"} {
		v := 0.0
		if s == to {
			v = 1
		}
		m.state.WithLabelValues(node, s).Set(v)
	}
}

// forgetNode drops the series of a node the store no longer uses.
func (m *Metrics) forgetNode(node string) {
	if m == nil {
		return
	}
	for _, s := range []string{"closed", "half-open", "open"} {
		m.state.DeleteLabelValues(node, s)
		m.transitions.DeleteLabelValues(node, s)
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}
