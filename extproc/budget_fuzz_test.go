package extproc

import (
	"context"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/ratelimit/budget"
)

// FuzzBudgetStream drives the budget stage with any sequence of messages
// (in or out of order, any bodies, statuses and headers): it never
// panics, answers Envoy only with what Envoy accepts, and settles a
// stream at most once.
func FuzzBudgetStream(f *testing.F) {
	s, _ := testServer(f, testConfig(f, budgetConfig), component.Deps{})
	f.Add([]byte{0, 1, 3, 4, 4}, "{\"max_tokens\":30}", "data: {\"usage\":{\"total_tokens\":9}}\n\n", "text/event-stream", "200")
	f.Add([]byte{0, 3, 4, 1, 5, 2}, "{}", "{\"usage\":{\"total_tokens\":1e3}}", "application/json", "503")
	f.Add([]byte{3, 0, 0, 4}, "x", "", "", "abc")
	f.Fuzz(func(t *testing.T, kinds []byte, reqBody, respBody, ct, status string) {
		if len(kinds) > 16 {
			kinds = kinds[:16]
		}
		settled := func() float64 {
			var n float64
			for _, st := range []string{"settled", "duplicate", "late", "unknown", "error"} {
				n += testutil.ToFloat64(s.bm.settlements.WithLabelValues("chat", st))
			}
			return n
		}
		n0 := settled()
		// A fresh store each time: the caller's budget is whole, and the
		// paths past a reservation are reached.
		s.budgets = budget.NewMemory(budget.MemoryOptions{})
		st := &budgetStream{srv: s, rt: s.rt.Load()}
		for i, k := range kinds {
			var m *extprocv3.ProcessingRequest
			eos := i == len(kinds)-1 || k&8 != 0
			switch k % 6 {
			case 0:
				m = withIdentity(requestHeaders("chat", eos, buffered, ":method", "POST", ":path", "/v1/chat"), "free", "fuzz")
			case 1:
				m = requestBody(reqBody, eos)
			case 2:
				m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}
			case 3:
				m = responseHeaders(eos, ":status", status, "content-type", ct)
			case 4:
				m = responseBody(respBody, eos)
			default:
				m = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}}
			}
			resp, err := st.handle(context.Background(), m)
			if err != nil {
				break
			}
			if resp != nil {
				if verr := resp.ValidateAll(); verr != nil {
					t.Fatalf("answer fails Envoy's validation: %v", verr)
				}
			}
			if st.done {
				break
			}
		}
		st.finish()
		st.finish()
		if d := settled() - n0; d > 1 {
			t.Fatalf("one stream settled %v times", d)
		}
	})
}
