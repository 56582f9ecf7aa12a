package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"

	"github.com/gatehouse/gatehouse/internal/config"
)

// Tracing is the process' OpenTelemetry setup. A nil *Tracing, or one built
// from a config without an OTLP endpoint, is off: every method is then a
// no-op that allocates nothing, so tracing costs nothing when unused.
type Tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewTracing starts an OTLP/gRPC exporter when cfg names an endpoint, and
// returns an off Tracing otherwise. The exporter connects lazily: an absent
// collector never delays start-up.
func NewTracing(ctx context.Context, cfg config.Tracing, version string) (*Tracing, error) {
	if cfg.OTLPEndpoint == "" {
		return nil, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", version),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// Parent-based: a request Envoy sampled is always traced here, and
		// one it did not is not; SampleRatio applies to new traces only.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	return &Tracing{
		tp:     tp,
		tracer: tp.Tracer("github.com/gatehouse/gatehouse"),
		prop:   Propagator(),
	}, nil
}

// Propagator reads and writes W3C traceparent/tracestate and Zipkin B3
// (single and multi header), the two formats Envoy's tracers send.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{},
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
	)
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil }

// StatsHandler returns the otelgrpc server handler that makes a span for
// every RPC, or nil when tracing is off (no handler at all is cheaper than
// a no-op one).
func (t *Tracing) StatsHandler() stats.Handler {
	if t == nil {
		return nil
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(t.prop),
	)
}

// StartFromHeaders starts a span for the work done on one Envoy request,
// as a child of the trace that request carries in its HTTP headers
// (traceparent, or B3) — the trace the user sees — and linked to the
// RPC's own span. With tracing off it returns ctx and a no-op span.
func (t *Tracing) StartFromHeaders(ctx context.Context, name string, headers propagation.TextMapCarrier) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	rpc := trace.SpanContextFromContext(ctx)
	remote := trace.SpanContextFromContext(t.prop.Extract(context.Background(), headers))
	var opts []trace.SpanStartOption
	parent := ctx
	if remote.IsValid() {
		parent = trace.ContextWithRemoteSpanContext(ctx, remote)
		if rpc.IsValid() && rpc.TraceID() != remote.TraceID() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: rpc}))
		}
	}
	opts = append(opts, trace.WithSpanKind(trace.SpanKindServer))
	return t.tracer.Start(parent, name, opts...)
}

// Shutdown flushes buffered spans.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}
