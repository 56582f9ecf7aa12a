package extproc

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/contract"
)

const grpcClientConfig = `
extproc: {}
listeners:
  - {name: web, address: 127.0.0.1:8080}
  - {name: echo.test, kind: grpc}
clusters:
  - {name: echo, endpoints: [{address: 127.0.0.1:1}]}
routes:
  - {id: web-all, listeners: [web], match: {prefix: /}, cluster: echo, extproc: {redact: {}}}
  - {id: rpc, listeners: [echo.test], match: {prefix: /grpc.testing.TestService/}, cluster: echo, extproc: {hygiene: {}}}
`

// grpcClientHeaders is the first message of a gRPC-Go client's ext_proc
// filter: metadata without pseudo-headers, raw_value only, the RPC's
// path and authority as attributes.
func grpcClientHeaders(kv ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, hv(kv[i], kv[i+1]))
	}
	return &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}}},
		Attributes: map[string]*structpb.Struct{contract.ExtProcFilterName: {Fields: map[string]*structpb.Value{
			contract.ExtProcPathAttribute: structpb.NewStringValue("/grpc.testing.TestService/UnaryCall"),
			contract.ExtProcHostAttribute: structpb.NewStringValue("echo.test"),
		}}},
	}
}

// TestGRPCClientStream: a gRPC client's stream finds its route by the id
// in the stream's metadata, or else by its path among the routes of grpc
// listeners only (an HTTP route matching "/" must not take it), and is
// answered in value, never raw_value.
func TestGRPCClientStream(t *testing.T) {
	s, reg := testServer(t, testConfig(t, grpcClientConfig), component.Deps{})
	for _, streamRoute := range []string{"rpc", ""} {
		st := s.newStream()
		st.streamRoute = streamRoute
		resp, err := st.handle(context.Background(), grpcClientHeaders("content-type", "application/grpc", contract.HeaderTier, "enterprise"))
		if err != nil {
			t.Fatal(err)
		}
		if !st.grpc || st.route.id != "rpc" {
			t.Fatalf("stream route %q (gRPC client %v) with stream metadata %q; want rpc", st.route.id, st.grpc, streamRoute)
		}
		if st.method != "POST" || st.path != "/grpc.testing.TestService/UnaryCall" || st.authority != "echo.test" {
			t.Errorf("request line %s %s %s; want the RPC's", st.method, st.path, st.authority)
		}
		out := grpcClientAnswer(resp)
		m := out.GetRequestHeaders().GetResponse().GetHeaderMutation()
		if len(m.GetRemoveHeaders()) != 1 || m.GetRemoveHeaders()[0] != contract.HeaderTier {
			t.Errorf("removes %v; want the client's %s", m.GetRemoveHeaders(), contract.HeaderTier)
		}
		for _, h := range m.GetSetHeaders() {
			if len(h.GetHeader().GetRawValue()) != 0 || h.GetHeader().GetValue() == "" {
				t.Errorf("sets %s as value %q raw_value %q; want value only", h.GetHeader().GetKey(), h.GetHeader().GetValue(), h.GetHeader().GetRawValue())
			}
		}
		if verr := out.ValidateAll(); verr != nil {
			t.Errorf("answer fails Envoy's validation: %v", verr)
		}
		// The response side: security headers, in value too; the route's
		// shared header values stay in raw_value for Envoy's streams.
		resp, err = st.handle(context.Background(), responseHeaders(false, "content-type", "application/grpc"))
		if err != nil {
			t.Fatal(err)
		}
		out = grpcClientAnswer(resp)
		got := map[string]string{}
		for _, h := range out.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
			got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got["x-content-type-options"] != "nosniff" {
			t.Errorf("response sets %v; want x-content-type-options: nosniff in value", got)
		}
		for _, h := range st.route.security {
			if len(h.GetHeader().GetRawValue()) == 0 {
				t.Errorf("the route's shared %s lost its raw_value", h.GetHeader().GetKey())
			}
		}
		st.finish(nil)
	}
	if got := counter(t, reg, "gatehouse_extproc_route_lookups_total", "source", "stream_metadata"); got != 1 {
		t.Errorf("route_lookups_total{source=stream_metadata} = %v; want 1", got)
	}
}

// TestGRPCClientImmediate: a gRPC client ends an RPC with grpc_status
// (INTERNAL when unset), so gatehouse's answers carry the status that
// fits the HTTP one.
func TestGRPCClientImmediate(t *testing.T) {
	for status, want := range map[typev3.StatusCode]codes.Code{400: codes.InvalidArgument, 401: codes.Unauthenticated, 409: codes.Aborted, 413: codes.ResourceExhausted, 503: codes.Unavailable, 500: codes.Internal} {
		in := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: status}, Details: "gatehouse_x",
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: hv("x-request-id", "r1")}}},
		}}}
		out := grpcClientAnswer(in).GetImmediateResponse()
		if codes.Code(out.GetGrpcStatus().GetStatus()) != want || out.GetDetails() != "gatehouse_x" || out.GetHeaders().GetSetHeaders()[0].GetHeader().GetValue() != "r1" {
			t.Errorf("HTTP %d answers gRPC %v %q %v; want %v with the details and headers in value", status, codes.Code(out.GetGrpcStatus().GetStatus()), out.GetDetails(), out.GetHeaders(), want)
		}
	}
}
