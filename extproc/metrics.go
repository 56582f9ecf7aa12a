package extproc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/extproc/redact"
)

// Processor names, as used in metric labels.
const (
	procHygiene     = "hygiene"
	procOpenAPI     = "openapi"
	procRedact      = "redact"
	procIdempotency = "idempotency"
)

// noRoute labels streams that matched no route ("-" can never be a route
// id, which must start and end with a letter or digit).
const noRoute = "-"

// metrics are the component's collectors. Per-route series are resolved
// once per config (routeMetrics), not per request.
type metrics struct {
	streams    *prometheus.CounterVec
	messages   *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
	results    *prometheus.CounterVec
	redactions *prometheus.CounterVec
	violations *prometheus.CounterVec
	idem       *prometheus.CounterVec
	bodies     *prometheus.CounterVec
	lookups    *prometheus.CounterVec
	protocol   *prometheus.CounterVec
	stages     *prometheus.CounterVec

	msgObs   [numMsgKinds]prometheus.Counter
	procObs  map[string]prometheus.Observer
	lookupBy map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_streams_total",
			Help: "ext_proc streams (one per HTTP request) by route and how they ended: continued, immediate (gatehouse answered the client itself), error (protocol error) or cancelled.",
		}, []string{"route", "result"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_messages_total",
			Help: "ext_proc messages received, by kind.",
		}, []string{"kind"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_extproc_processor_seconds",
			Help:    "Time spent in each processor per message it handled.",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"processor"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_processor_results_total",
			Help: "What each processor did to a request or response: passed, mutated, rejected, reported (report-only response validation) or skipped.",
		}, []string{"route", "processor", "result"}),
		redactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_redactions_total",
			Help: "Values masked in response bodies, by route and kind (path, email, card, national_id, bearer, jwt).",
		}, []string{"route", "kind"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_openapi_violations_total",
			Help: "Requests refused (direction request) and responses reported (direction response, never blocked) for breaking the route's OpenAPI contract.",
		}, []string{"route", "direction"}),
		idem: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_idempotency_total",
			Help: "Idempotency key outcomes: acquired, replay, in_flight (409), mismatch (422), invalid_key, missing_key, stored, released (the request did not run: the key is freed), held (the stream ended after the request went on, with no response stored: the key stays held until lockTimeout), unknown_outcome (a 504: held until lockTimeout), unreplayable (a status Envoy cannot replay: held), lost, too_large (response too large to store: held until lockTimeout), store_error (record not stored), store_error_open, store_error_closed.",
		}, []string{"route", "result"}),
		bodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_bodies_total",
			Help: "Bodies the processors could not inspect, by direction and reason (over_limit, not_sent, uninspectable, not_json, trailing_data, duplicate_names) and the action taken (skipped, rejected).",
		}, []string{"route", "direction", "reason", "action"}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_route_lookups_total",
			Help: "How the route of a stream was found: attribute (xds.route_name), metadata, stream_metadata (the route id a proxyless gRPC client sends), match (host/path fallback), unknown_id (Envoy named a route this config lacks) or none.",
		}, []string{"source"}),
		protocol: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_protocol_errors_total",
			Help: "Streams ended because Envoy broke the protocol (out-of-order or unknown messages, trailers ending a held body).",
		}, []string{"reason"}),
		stages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_stage_streams_total",
			Help: "ext_proc streams by the filter that opened them: pre_authz (before ext_authz), post_authz (after ext_authz and the rate limit), budget (the cost budget filter, before the router), or all (one filter: a hand-written Envoy config or a proxyless gRPC client).",
		}, []string{"stage"}),
	}
	for _, c := range []prometheus.Collector{m.streams, m.messages, m.seconds, m.results, m.redactions, m.violations, m.idem, m.bodies, m.lookups, m.protocol, m.stages} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for k := range numMsgKinds {
		m.msgObs[k] = m.messages.WithLabelValues(msgKind(k).String())
	}
	m.procObs = map[string]prometheus.Observer{}
	for _, p := range []string{procHygiene, procOpenAPI, procRedact, procIdempotency} {
		m.procObs[p] = m.seconds.WithLabelValues(p)
	}
	m.lookupBy = map[string]prometheus.Counter{}
	for _, s := range []string{"attribute", "metadata", "stream_metadata", "match", "unknown_id", "none"} {
		m.lookupBy[s] = m.lookups.WithLabelValues(s)
	}
	return m, nil
}

// routeMetrics are one route's series, resolved when the config is
// compiled so that the request path does no label hashing.
type routeMetrics struct {
	m                                        *metrics
	route                                    string
	continued, immediate, errored, cancelled prometheus.Counter
	redacted                                 []prometheus.Counter // by redact.Kind
	reqViolations, respViolations            prometheus.Counter
}

func (m *metrics) forRoute(id string) *routeMetrics {
	rm := &routeMetrics{
		m: m, route: id,
		continued: m.streams.WithLabelValues(id, "continued"),
		immediate: m.streams.WithLabelValues(id, "immediate"),
		errored:   m.streams.WithLabelValues(id, "error"),
		cancelled: m.streams.WithLabelValues(id, "cancelled"),
	}
	for _, k := range redact.Kinds() {
		rm.redacted = append(rm.redacted, m.redactions.WithLabelValues(id, k.String()))
	}
	rm.reqViolations = m.violations.WithLabelValues(id, "request")
	rm.respViolations = m.violations.WithLabelValues(id, "response")
	return rm
}

// result counts what a processor did.
func (rm *routeMetrics) result(proc, res string) {
	rm.m.results.WithLabelValues(rm.route, proc, res).Inc()
}

func (rm *routeMetrics) idempotency(res string) {
	rm.m.idem.WithLabelValues(rm.route, res).Inc()
}

func (rm *routeMetrics) body(dir, reason, action string) {
	rm.m.bodies.WithLabelValues(rm.route, dir, reason, action).Inc()
}

// forget drops the series of routes a new config no longer has.
func (m *metrics) forget(route string) {
	for _, v := range []*prometheus.CounterVec{m.streams, m.results, m.redactions, m.violations, m.idem, m.bodies} {
		v.DeletePartialMatch(prometheus.Labels{"route": route})
	}
}
