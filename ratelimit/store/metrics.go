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
}

// NewMetrics registers the store metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		roundTrips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_round_trips_total",
			Help: "Redis round trips of the rate limit store, by result (ok, error).",
		}, []string{"result"}),
		roundTripSec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_ratelimit_store_round_trip_seconds",
			Help:    "Duration of one Redis round trip of the rate limit store (a batch of requests).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
		calls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_batched_calls_total",
			Help: "RLS requests sent to Redis; divided by round trips, the mean batch size.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_errors_total",
			Help: "Store failures by reason: timeout, error (Redis answered an error or the connection failed), breaker_open (not tried).",
		}, []string{"reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_store_breaker_transitions_total",
			Help: "Circuit breaker state changes, by new state.",
		}, []string{"to"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_ratelimit_store_breaker_state",
			Help: "1 for the circuit breaker's current state (closed, half-open, open).",
		}, []string{"state"}),
	}
	for _, c := range []prometheus.Collector{m.roundTrips, m.roundTripSec, m.calls, m.errors, m.transitions, m.state} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"ok", "error"} {
		m.roundTrips.WithLabelValues(r)
	}
	for _, r := range []string{"timeout", "error", "breaker_open"} {
		m.errors.WithLabelValues(r)
	}
	return m, nil
}

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
	case errors.Is(err, ErrUnavailable):
		m.errors.WithLabelValues("breaker_open").Inc()
	case isTimeout(err):
		m.errors.WithLabelValues("timeout").Inc()
	default:
		m.errors.WithLabelValues("error").Inc()
	}
}

func (m *Metrics) storeError(reason string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(reason).Inc()
}

func (m *Metrics) breakerState(from, to string) {
	if m == nil {
		return
	}
	if from != "" {
		m.transitions.WithLabelValues(to).Inc()
	}
	for _, s := range []string{"closed", "half-open", "open"} {
		v := 0.0
		if s == to {
			v = 1
		}
		m.state.WithLabelValues(s).Set(v)
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &t) && t.Timeout())
}
