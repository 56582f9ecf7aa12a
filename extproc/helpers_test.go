package extproc

import (
	"context"
	"encoding/json"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// testConfig loads a config made of the extproc section given and routes.
func testConfig(t testing.TB, body string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("<test>", []byte("apiVersion: gatehouse/v1\n"+body), config.LoadOptions{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// testServer builds a server for cfg with a fresh registry.
func testServer(t testing.TB, cfg *config.Config, deps component.Deps) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	deps.Metrics = reg
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := s.Prepare(cfg)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	commit()
	return s, reg
}

func hv(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

// requestHeaders is the first message of a stream as Envoy sends it:
// headers with pseudo-headers, protocol_config and (when route is set) the
// route name attribute.
func requestHeaders(route string, eos bool, modes [2]extprocfilterv3.ProcessingMode_BodySendMode, kv ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, hv(kv[i], kv[i+1]))
	}
	req := &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: eos,
		}},
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: modes[0], ResponseBodyMode: modes[1]},
	}
	if route != "" {
		req.Attributes = map[string]*structpb.Struct{contract.ExtProcFilterName: {
			Fields: map[string]*structpb.Value{contract.ExtProcRouteAttribute: structpb.NewStringValue(route)},
		}}
	}
	return req
}

var buffered = [2]extprocfilterv3.ProcessingMode_BodySendMode{extprocfilterv3.ProcessingMode_BUFFERED, extprocfilterv3.ProcessingMode_BUFFERED}

func requestBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

func responseHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, hv(kv[i], kv[i+1]))
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: eos,
	}}}
}

func responseBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

// exchange drives one stream with msgs and returns every answer; it stops
// at an immediate response or an error, as Process does.
func exchange(t testing.TB, s *Server, msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	t.Helper()
	st := s.newStream()
	var out []*extprocv3.ProcessingResponse
	var err error
	defer func() { st.finish(err) }()
	for _, m := range msgs {
		var resp *extprocv3.ProcessingResponse
		resp, err = st.handle(context.Background(), m)
		if err != nil {
			return out, err
		}
		if resp != nil {
			if verr := resp.ValidateAll(); verr != nil {
				t.Errorf("answer to %T fails Envoy's validation: %v", m.Request, verr)
			}
			out = append(out, resp)
			st.delivered() // as Process does once Send succeeds
		}
		if st.done {
			break
		}
	}
	return out, nil
}

// mustExchange is exchange that fails the test on a stream error.
func mustExchange(t testing.TB, s *Server, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	out, err := exchange(t, s, msgs...)
	if err != nil {
		t.Fatalf("stream error: %v", err)
	}
	return out
}

// mut returns the header mutation of an answer (nil when none).
func mut(r *extprocv3.ProcessingResponse) *extprocv3.HeaderMutation {
	switch x := r.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return x.RequestHeaders.GetResponse().GetHeaderMutation()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return x.ResponseHeaders.GetResponse().GetHeaderMutation()
	case *extprocv3.ProcessingResponse_RequestBody:
		return x.RequestBody.GetResponse().GetHeaderMutation()
	case *extprocv3.ProcessingResponse_ResponseBody:
		return x.ResponseBody.GetResponse().GetHeaderMutation()
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return x.ImmediateResponse.GetHeaders()
	}
	return nil
}

// setHeaders flattens the headers a mutation sets.
func setHeaders(m *extprocv3.HeaderMutation) map[string]string {
	out := map[string]string{}
	for _, h := range m.GetSetHeaders() {
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return out
}

// bodyOf returns the body a body answer replaces the chunk with, and
// whether it replaces it.
func bodyOf(r *extprocv3.ProcessingResponse) (string, bool) {
	var c *extprocv3.CommonResponse
	switch x := r.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestBody:
		c = x.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		c = x.ResponseBody.GetResponse()
	}
	switch b := c.GetBodyMutation().GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return string(b.Body), true
	case *extprocv3.BodyMutation_ClearBody:
		return "", b.ClearBody
	}
	return "", false
}

// problemOf decodes the problem+json of an immediate response.
func problemOf(t testing.TB, r *extprocv3.ProcessingResponse) (int, problem) {
	t.Helper()
	ir := r.GetImmediateResponse()
	if ir == nil {
		t.Fatalf("answer is %T; want an immediate response", r.Response)
	}
	var p problem
	if ct := setHeaders(ir.GetHeaders())["content-type"]; ct == "application/problem+json" {
		if err := json.Unmarshal(ir.GetBody(), &p); err != nil {
			t.Fatalf("problem body %q: %v", ir.GetBody(), err)
		}
	}
	return int(ir.GetStatus().GetCode()), p
}

// counter reads one series of a counter vector.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			want := map[string]string{}
			for i := 0; i+1 < len(labels); i += 2 {
				want[labels[i]] = labels[i+1]
			}
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
