package grpcserver

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics are the per-RPC metrics shared by every gRPC server of the
// process, labelled by component and method.
type Metrics struct {
	handled *prometheus.CounterVec
	seconds *prometheus.HistogramVec
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
			Help: "RPCs completed, by component, method and gRPC status code.",
		}, []string{"component", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_grpc_server_handling_seconds",
			Help:    "Time to handle an RPC (a whole stream for streaming RPCs).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"component", "method"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.seconds} {
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

func (m *Metrics) observe(component, method string, start time.Time, err error) {
	mm := m.forMethod(component, method)
	mm.seconds.Observe(time.Since(start).Seconds())
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

func (m *Metrics) unary(component string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.observe(component, info.FullMethod, start, err)
		return resp, err
	}
}

func (m *Metrics) stream(component string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		m.observe(component, info.FullMethod, start, err)
		return err
	}
}
