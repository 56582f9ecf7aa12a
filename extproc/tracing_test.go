package extproc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

func TestTracing(t *testing.T) {
	// An exporter towards a closed port: spans are made and sampled, and
	// the export fails in the background, which is all this test needs.
	tr, err := telemetry.NewTracing(context.Background(), config.Tracing{OTLPEndpoint: "127.0.0.1:1", Insecure: true, SampleRatio: 1, ServiceName: "test"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = tr.Shutdown(ctx)
	})
	s, _ := testServer(t, testConfig(t, streamConfig), component.Deps{Tracing: tr})

	// No traceparent: gatehouse's span starts the trace, and the upstream
	// is told to continue it below that span.
	st := s.newStream()
	resp, err := st.handle(context.Background(), requestHeaders("hygiene", true, buffered, ":path", "/h", ":method", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	tp := setHeaders(mut(resp))["traceparent"]
	sc := st.span.SpanContext()
	if !sc.IsValid() || !strings.Contains(tp, sc.TraceID().String()) || !strings.Contains(tp, sc.SpanID().String()) || !strings.HasSuffix(tp, "-01") {
		t.Errorf("generated traceparent %q; want the span %v, sampled", tp, sc)
	}
	st.finish(nil)

	// A valid traceparent: the span joins that trace and nothing is set.
	const in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	st = s.newStream()
	resp, err = st.handle(context.Background(), requestHeaders("hygiene", true, buffered, ":path", "/h", ":method", "GET", "traceparent", in))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.span.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span trace id %s; want the request's", got)
	}
	if _, set := setHeaders(mut(resp))["traceparent"]; set {
		t.Errorf("a valid traceparent was replaced")
	}
	st.finish(nil)
}
