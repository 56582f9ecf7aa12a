package telemetry

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// collector is a minimal OTLP/gRPC trace receiver on loopback.
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string]string // span name → trace id (hex)
}

func (c *collector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans[s.GetName()] = trace.TraceID(s.GetTraceId()).String()
			}
		}
	}
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	c := &collector{spans: map[string]string{}}
	addr := testenv.ServeGRPC(t, func(s *grpc.Server) { collectortracepb.RegisterTraceServiceServer(s, c) })
	return c, addr
}

func TestOffIsNoop(t *testing.T) {
	tr, err := NewTracing(context.Background(), config.Tracing{}, "test")
	if err != nil || tr != nil || tr.Enabled() || tr.StatsHandler() != nil {
		t.Fatalf("NewTracing(no endpoint) = %v, %v; want an off (nil) Tracing", tr, err)
	}
	ctx := context.Background()
	got, span := tr.StartFromHeaders(ctx, "x", propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	if got != ctx || span.IsRecording() {
		t.Errorf("StartFromHeaders with tracing off recorded a span")
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, s := tr.StartFromHeaders(ctx, "x", propagation.MapCarrier{})
		s.End()
	})
	if allocs > 1 { // the carrier map literal itself
		t.Errorf("StartFromHeaders with tracing off allocates %v times; want none of its own", allocs)
	}
}

func TestJoinsEnvoyTraceAndExports(t *testing.T) {
	col, addr := startCollector(t)
	tr, err := NewTracing(context.Background(), config.Tracing{OTLPEndpoint: addr, Insecure: true, SampleRatio: 0, ServiceName: "gatehouse"}, "test")
	if err != nil || !tr.Enabled() {
		t.Fatalf("NewTracing() = %v, %v", tr, err)
	}
	cases := []struct {
		name    string
		headers propagation.MapCarrier
		trace   string
	}{
		{"w3c", propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"b3-multi", propagation.MapCarrier{"x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1", "x-b3-sampled": "1"}, "80f198ee56343ba864fe8b2a57d3eff7"},
		{"b3-single", propagation.MapCarrier{"b3": "a3ce929d0e0e47364bf92f3577b34da6-a2fb4a1d1a96d312-1"}, "a3ce929d0e0e47364bf92f3577b34da6"},
	}
	for _, c := range cases {
		_, span := tr.StartFromHeaders(context.Background(), "check-"+c.name, c.headers)
		if got := span.SpanContext().TraceID().String(); got != c.trace {
			t.Errorf("%s: span trace id = %s; want Envoy's %s", c.name, got, c.trace)
		}
		span.End()
	}
	// SampleRatio 0 with no parent: not sampled, not exported.
	_, span := tr.StartFromHeaders(context.Background(), "unsampled", propagation.MapCarrier{})
	span.End()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, c := range cases {
		if got := col.spans["check-"+c.name]; got != c.trace {
			t.Errorf("collector got span check-%s in trace %q; want %s", c.name, got, c.trace)
		}
	}
	if _, ok := col.spans["unsampled"]; ok {
		t.Error("an unsampled span was exported")
	}
}
