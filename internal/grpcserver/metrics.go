package grpcserver

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Metrics are the per-RPC metrics shared by every gRPC server of the
// process, labelled by component and method.
type Metrics struct {
	handled  *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	// Label lookups are cached per method so that the hot path does not
	// hash label values on every call.
	cache sync.Map // component+method → *methodMetrics
}

// methodMetrics are one method's series. The handled counters are kept
// per code as they are first used (a series appears with its first RPC).
type methodMetrics struct {
	seconds prometheus.Observer
	byCode  [numCodes]atomic.Pointer[prometheus.Counter]
	// other holds codes beyond the known ones, which no gRPC library sends.
	mu    sync.Mutex
	other map[codes.Code]prometheus.Counter
	// labels
	component, method string
	// own is false for the health and reflection services, whose RPCs do
	// not count as the component's running RPCs.
	own bool
	m   *Metrics
}

const numCodes = 17 // codes.OK … codes.Unauthenticated

// NewMetrics registers the gRPC metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_grpc_server_handled_total",
			Help: "RPCs completed, by component, method and gRPC status code; every RPC counts, those whose request could not be decoded (InvalidArgument) or was too large (ResourceExhausted) included.",
		}, []string{"component", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_grpc_server_handling_seconds",
			Help:    "Time to handle an RPC (a whole stream for streaming RPCs).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"component", "method"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_grpc_server_inflight_bytes",
			Help: "Request bytes the server holds now, against server.grpc.maxInflightBytes.",
		}, []string{"component"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.seconds, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) forMethod(component, method string) *methodMetrics {
	key := component + method
	if mm, ok := m.cache.Load(key); ok {
		return mm.(*methodMetrics)
	}
	own := !strings.HasPrefix(method, "/grpc.health.") && !strings.HasPrefix(method, "/grpc.reflection.")
	mm := &methodMetrics{seconds: m.seconds.WithLabelValues(component, method), component: component, method: method, own: own, m: m}
	actual, _ := m.cache.LoadOrStore(key, mm)
	return actual.(*methodMetrics)
}

// observe counts one RPC that ended with err after d.
func (mm *methodMetrics) observe(d time.Duration, err error) {
	mm.seconds.Observe(d.Seconds())
	mm.handled(status.Code(err)).Inc()
}

func (mm *methodMetrics) handled(code codes.Code) prometheus.Counter {
	if code < numCodes {
		if c := mm.byCode[code].Load(); c != nil {
			return *c
		}
		c := mm.m.handled.WithLabelValues(mm.component, mm.method, code.String())
		mm.byCode[code].Store(&c)
		return c
	}
	mm.mu.Lock()
	defer mm.mu.Unlock()
	c, ok := mm.other[code]
	if !ok {
		c = mm.m.handled.WithLabelValues(mm.component, mm.method, code.String())
		if mm.other == nil {
			mm.other = map[codes.Code]prometheus.Counter{}
		}
		mm.other[code] = c
	}
	return c
}

// meter counts every RPC of one server when it ends, and how many of the
// component's RPCs are running (what a drain that runs out of time cuts; a
// client's health watch or reflection stream is not one of them). It is
// called by the registrar's wrappers of each method, and for methods the
// server does not have by its unknown-service handler, rather than being a
// gRPC stats handler: with a stats handler installed gRPC builds an event,
// copies the request's metadata and looks up the peer for every RPC
// (about 14 allocations a request, a tenth of the rate limiter's CPU under
// load), for nothing these counters need.
type meter struct {
	m         *Metrics
	component string
	active    atomic.Int64
}

func (m *Metrics) meter(component string) *meter {
	return &meter{m: m, component: component}
}

// method returns the series of a method (its full name, /service/method).
func (mt *meter) method(full string) *methodMetrics { return mt.m.forMethod(mt.component, full) }

// begin marks an RPC of mm started and returns when.
func (mt *meter) begin(mm *methodMetrics) time.Time {
	if mm.own {
		mt.active.Add(1)
	}
	return time.Now()
}

// end counts an RPC begun at start that ended with err.
func (mt *meter) end(mm *methodMetrics, start time.Time, err error) {
	if mm.own {
		mt.active.Add(-1)
	}
	mm.observe(time.Since(start), err)
}
