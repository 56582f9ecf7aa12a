package extproc

import (
	"context"
	"fmt"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/internal/component"
)

// BenchmarkBudgetStage is the budget stage's own cost per request, over
// the in-process store: the request headers and JSON body (the estimate),
// the response headers and a JSON body with usage (the settlement).
func BenchmarkBudgetStage(b *testing.B) {
	s, _ := testServer(b, testConfig(b, `extproc: {}
routes:
  - id: chat
    match: {prefix: /v1/chat}
    budget:
      name: tokens
      default: [{amount: 1000000000000, per: month, calendar: true}, {amount: 1000000000000, per: minute}]
      reserve: {jsonPath: $.max_tokens, fixed: 200}
      cost: {from: json, jsonPath: $.usage.total_tokens}
`), component.Deps{})
	rt := s.rt.Load()
	ctx := context.Background()
	msgs := make([][]*extprocv3.ProcessingRequest, 64)
	for i := range msgs {
		msgs[i] = append(chatRequest("free", fmt.Sprint("user-", i), `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`),
			responseHeaders(false, ":status", "200", "content-type", "application/json"),
			responseBody(`{"choices":[{"message":{"content":"hello"}}],"usage":{"total_tokens":7}}`, true))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st := &budgetStream{srv: s, rt: rt}
		for _, m := range msgs[i%len(msgs)] {
			if _, err := st.handle(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		st.finish()
	}
}
