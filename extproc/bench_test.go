package extproc

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// benchExchanges are the streams the benchmarks replay: a header-only
// route (hygiene) and a route with every body processor.
func benchExchanges() map[string][]*extprocv3.ProcessingRequest {
	resp := `{"id":42,"customer":{"email":"jane@example.com","card":"4111 1111 1111 1111"},"items":[` +
		strings.Repeat(`{"sku":"ABC-1234","qty":2,"note":"leave at the door"},`, 20) + `{"sku":"XYZ-0001","qty":1}]}`
	return map[string][]*extprocv3.ProcessingRequest{
		"HeaderOnly": {
			requestHeaders("hygiene", true, buffered, ":authority", "api.example.com", ":path", "/h/orders/42", ":method", "GET",
				":scheme", "https", "user-agent", "curl/8", "accept", "*/*", "x-request-id", "6f1c2d3e-4b5a-4c6d-8e7f-000000000001",
				"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
			responseHeaders(false, ":status", "200", "content-type", "application/json", "server", "upstream"),
		},
		"BodyProcessors": {
			requestHeaders("orders", false, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST",
				":scheme", "https", "content-type", "application/json", "x-request-id", "r-1", "authorization", "Bearer abc",
				"idempotency-key", "k"),
			requestBody(`{"sku":"ABC-1234","qty":2}`, true),
			responseHeaders(false, ":status", "201", "content-type", "application/json"),
			responseBody(`{"id":42}`, true),
		},
		"Redaction": {
			requestHeaders("redact", true, buffered, ":path", "/r", ":method", "GET"),
			responseHeaders(false, ":status", "200", "content-type", "application/json"),
			responseBody(resp, true),
		},
	}
}

// BenchmarkProcess measures the state machine alone (no gRPC): the work
// gatehouse adds per HTTP request. BodyProcessors validates the request
// against OpenAPI, claims and stores an idempotency key (in memory, a
// fresh key each time) and validates the response.
func BenchmarkProcess(b *testing.B) {
	// Room for a fresh idempotency key per iteration however fast the machine.
	cfg := testConfig(b, strings.Replace(streamConfig, "maxBodySize: 1KiB", "maxBodySize: 64KiB\n  idempotency: {memoryMaxKeys: 100000000}", 1))
	for name, msgs := range benchExchanges() {
		b.Run(name, func(b *testing.B) {
			s, _ := testServer(b, cfg, component.Deps{})
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			c0 := cpuSeconds()
			defer func() { b.ReportMetric((cpuSeconds()-c0)*1e6/float64(b.N), "cpu-µs/op") }()
			for b.Loop() {
				if name == "BodyProcessors" {
					// A fresh key per iteration, as distinct requests.
					i++
					msgs[0].GetRequestHeaders().Headers.Headers[7].RawValue = []byte("k" + itoa(i))
				}
				st := s.newStream()
				for _, m := range msgs {
					resp, err := st.handle(ctx, m)
					if err != nil || resp.GetImmediateResponse() != nil {
						b.Fatal(err, resp)
					}
				}
				st.finish(nil)
			}
		})
	}
}

// cpuSeconds is the process's user+system CPU time, for a per-operation
// CPU figure that the neighbours on a shared machine do not inflate.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func itoa(i int) string {
	var buf [20]byte
	n := len(buf)
	for {
		n--
		buf[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(buf[n:])
		}
	}
}

// BenchmarkProcessGRPC measures one whole stream over gRPC on loopback,
// as Envoy drives it, against a null server in the same run: the ratio is
// what gatehouse costs over the transport itself.
func BenchmarkProcessGRPC(b *testing.B) {
	cfg := testConfig(b, streamConfig)
	s, _ := testServer(b, cfg, component.Deps{})
	for _, tc := range []struct {
		name string
		srv  extprocv3.ExternalProcessorServer
	}{{"Null", nullServer{}}, {"Gatehouse", s}} {
		b.Run(tc.name, func(b *testing.B) {
			c := startGRPC(b, tc.srv)
			msgs := benchExchanges()["HeaderOnly"]
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := drive(ctx, c, msgs); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func startGRPC(b *testing.B, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	cc := testenv.GRPC(b, func(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, srv) })
	return extprocv3.NewExternalProcessorClient(cc)
}

func drive(ctx context.Context, c extprocv3.ExternalProcessorClient, msgs []*extprocv3.ProcessingRequest) error {
	st, err := c.Process(ctx)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			return err
		}
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
	st.CloseSend()
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// nullServer answers every message with an empty CONTINUE: the ceiling.
type nullServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

func (nullServer) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var resp *extprocv3.ProcessingResponse
		switch req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		default:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

// BenchmarkStagesGRPC is the price of the two ext_proc stages of issue 14
// on a route with hygiene, OpenAPI and response validation, over gRPC on
// loopback: one stream running every processor (a single ext_proc filter)
// against a pre_authz stream (hygiene: request and response headers) plus
// a post_authz stream (the rest), as Envoy drives them.
func BenchmarkStagesGRPC(b *testing.B) {
	cfg := testConfig(b, streamConfig)
	s, _ := testServer(b, cfg, component.Deps{})
	c := startGRPC(b, s)
	req := func() *extprocv3.ProcessingRequest {
		return requestHeaders("orders", false, buffered, ":authority", "api.example.com", ":path", "/v1/orders", ":method", "POST",
			":scheme", "https", "content-type", "application/json", "x-request-id", "6f1c2d3e-4b5a-4c6d-8e7f-000000000001")
	}
	body, respHeaders, respBody := requestBody(`{"sku":"ABC-1234","qty":2}`, true),
		responseHeaders(false, ":status", "201", "content-type", "application/json"), responseBody(`{"id":42}`, true)
	all := []*extprocv3.ProcessingRequest{req(), body, respHeaders, respBody}
	pre := []*extprocv3.ProcessingRequest{req(), respHeaders}
	post := []*extprocv3.ProcessingRequest{req(), body, respHeaders, respBody}
	refused := responseHeaders(false, ":status", "401", "content-type", "text/plain")
	refusedAll := []*extprocv3.ProcessingRequest{req(), body, refused}
	refusedPre := []*extprocv3.ProcessingRequest{req(), refused}
	stage := func(st string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), contract.ExtProcStageMetadata, st)
	}
	for _, tc := range []struct {
		name    string
		streams func(context.Context) error
	}{
		{"OneStream", func(ctx context.Context) error { return drive(ctx, c, all) }},
		{"TwoStages", func(context.Context) error {
			if err := drive(stage(contract.ExtProcStagePreAuthz), c, pre); err != nil {
				return err
			}
			return drive(stage(contract.ExtProcStagePostAuthz), c, post)
		}},
		// A request ext_authz refuses (401): in front of ext_authz the one
		// filter validated its body first; now only hygiene runs.
		{"RefusedOneStream", func(ctx context.Context) error { return drive(ctx, c, refusedAll) }},
		{"RefusedTwoStages", func(context.Context) error { return drive(stage(contract.ExtProcStagePreAuthz), c, refusedPre) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			c0 := cpuSeconds()
			defer func() { b.ReportMetric((cpuSeconds()-c0)*1e6/float64(b.N), "cpu-µs/op") }()
			for b.Loop() {
				if err := tc.streams(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
