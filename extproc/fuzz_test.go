package extproc

import (
	"context"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/internal/component"
)

// FuzzStream drives the state machine with arbitrary message sequences,
// modes, headers and bodies on routes with every processor. It must never
// panic, and every answer must pass Envoy's own validation.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0, 1, 3, 4}, uint8(1), "orders", "POST", "/v1/orders", "application/json", []byte(`{"sku":"a","qty":1}`), []byte(`{"id":1}`))
	f.Add([]byte{0, 1, 1, 2, 3, 4, 4, 5}, uint8(2), "redact", "GET", "/r", "application/json", []byte("x"), []byte(`{"e":"jane@example.com"}`))
	f.Add([]byte{0, 3, 1}, uint8(3), "orders", "POST", "/v1/orders?x=%zz", "text/plain", []byte{0xff, 0xfe}, []byte{0x1f, 0x8b})
	f.Add([]byte{4, 0, 0}, uint8(4), "", "DELETE", "", "", []byte(nil), []byte(nil))
	f.Add([]byte{0, 1, 3, 4}, uint8(0), "pay", "POST", "/pay", "application/json", []byte(`{"a":1}`), []byte(`[[[[[[[[]]]]]]]]`))
	s, _ := testServer(f, testConfig(f, streamConfig+`
  - id: pay
    match: {prefix: /pay}
    extproc:
      idempotency: {}
      redact: {}
      hygiene: {}
      onLargeBody: skip
`), component.Deps{})
	modes := []extprocfilterv3.ProcessingMode_BodySendMode{
		extprocfilterv3.ProcessingMode_NONE, extprocfilterv3.ProcessingMode_STREAMED, extprocfilterv3.ProcessingMode_BUFFERED,
		extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
	}
	f.Fuzz(func(t *testing.T, seq []byte, mode uint8, route, method, path, ct string, reqBody, respBody []byte) {
		if len(seq) > 16 {
			seq = seq[:16]
		}
		m := [2]extprocfilterv3.ProcessingMode_BodySendMode{modes[int(mode)%len(modes)], modes[int(mode/8)%len(modes)]}
		st := s.newStream()
		var err error
		defer func() { st.finish(err) }()
		for i, k := range seq {
			eos := i == len(seq)-1 || k&0x80 != 0
			var msg *extprocv3.ProcessingRequest
			switch k % 7 {
			case 0:
				msg = requestHeaders(route, eos, m, ":authority", "api.example.com", ":path", path, ":method", method,
					"content-type", ct, "idempotency-key", "k", "x-gatehouse-tier", "gold")
			case 1:
				msg = requestBody(string(reqBody), eos)
			case 2:
				msg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
			case 3:
				msg = responseHeaders(eos, ":status", "201", "content-type", ct, "content-length", "12", "content-encoding", string(respBody[:min(len(respBody), 4)]))
			case 4:
				msg = responseBody(string(respBody), eos)
			case 5:
				msg = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}
			default:
				msg = &extprocv3.ProcessingRequest{}
			}
			var resp *extprocv3.ProcessingResponse
			resp, err = st.handle(context.Background(), msg)
			if err != nil {
				return
			}
			if resp != nil {
				if verr := resp.ValidateAll(); verr != nil {
					t.Fatalf("answer to message %d fails Envoy's validation: %v", i, verr)
				}
				if k&0x40 == 0 {
					st.delivered() // as Process does once Send succeeds; else the send "failed"
				}
			}
			if st.done {
				return // an immediate response (checked above) ends the stream
			}
		}
	})
}
