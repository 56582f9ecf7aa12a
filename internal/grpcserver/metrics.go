package grpcserver

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"
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

type methodMetrics struct {
	seconds prometheus.Observer
	mu      sync.Mutex
	codes   map[string]prometheus.Counter
}

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
	mm := &methodMetrics{seconds: m.seconds.WithLabelValues(component, method), codes: map[string]prometheus.Counter{}}
	actual, _ := m.cache.LoadOrStore(key, mm)
	return actual.(*methodMetrics)
}

func (m *Metrics) observe(component, method string, d time.Duration, err error) {
	mm := m.forMethod(component, method)
	mm.seconds.Observe(d.Seconds())
	code := status.Code(err).String()
	mm.mu.Lock()
	c, ok := mm.codes[code]
	if !ok {
		c = m.handled.WithLabelValues(component, method, code)
		mm.codes[code] = c
	}
	mm.mu.Unlock()
	c.Inc()
}

// statsHandler counts every RPC of one server when it ends, and how many
// of the component's RPCs are running (what a drain that runs out of time
// cuts; a client's health watch or reflection stream is not one of them).
type statsHandler struct {
	m         *Metrics
	component string
	active    atomic.Int64
}

type rpcInfo struct {
	method string
	// own is false for the health and reflection services.
	own bool
}

func (m *Metrics) handler(component string) *statsHandler {
	return &statsHandler{m: m, component: component}
}

type methodKey struct{}

func (h *statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	m := info.FullMethodName
	own := !strings.HasPrefix(m, "/grpc.health.") && !strings.HasPrefix(m, "/grpc.reflection.")
	return context.WithValue(ctx, methodKey{}, rpcInfo{method: m, own: own})
}

func (h *statsHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	info, _ := ctx.Value(methodKey{}).(rpcInfo)
	switch s := s.(type) {
	case *stats.Begin:
		if info.own {
			h.active.Add(1)
		}
	case *stats.End:
		if info.own {
			h.active.Add(-1)
		}
		h.m.observe(h.component, info.method, s.EndTime.Sub(s.BeginTime), s.Error)
	}
}

func (h *statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h *statsHandler) HandleConn(context.Context, stats.ConnStats) {}
