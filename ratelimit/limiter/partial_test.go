package limiter

import (
	"context"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// partialStore answers every op but fails those whose key holds failKey,
// as a Redis Cluster store does when one master fails.
type partialStore struct {
	store.Store
	failKey string
}

func (p *partialStore) Eval(ctx context.Context, ops []*store.Op) error {
	if err := p.Store.Eval(ctx, ops); err != nil {
		return err
	}
	failed := 0
	for _, op := range ops {
		op.Err = nil
		if len(op.Limits) > 0 && strings.Contains(op.Limits[0].Key, p.failKey) {
			op.Err = store.ErrUnavailable
			failed++
		}
	}
	if failed == 0 {
		return nil
	}
	return &store.PartialError{Failed: failed, Total: len(ops), First: store.ErrUnavailable}
}

// TestPartialStoreFailure: when the store answers some descriptors of a
// request and not others (one Redis Cluster master down), the answered
// ones are decided by their counters and only the others follow their
// failure mode.
func TestPartialStoreFailure(t *testing.T) {
	f := newFixture(t, gatehouseYAML)
	f.store.Store = &partialStore{Store: f.store.Store, failKey: "|gold|"}
	anon := d("route", "orders", "subject", "10.0.0.7")
	decided := func(rule, dec string) float64 {
		return testutil.ToFloat64(f.lim.m.decisions.WithLabelValues("gatehouse", rule, dec))
	}
	okBefore, degBefore := decided("gatehouse/orders/anonymous", "ok"), decided("gatehouse/orders/gold", "degraded_open")
	r := f.call(t, rlReq("gatehouse", gold("p"), anon))
	if r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("answer = %v; want OK (gold open by its failure mode, anonymous decided: 1st of 1/hour)", r.OverallCode)
	}
	if got := r.Statuses[1].GetCurrentLimit().GetRequestsPerUnit(); got != 1 {
		t.Errorf("anonymous status limit = %d; want 1 (decided by its counter)", got)
	}
	if n := decided("gatehouse/orders/anonymous", "ok") - okBefore; n != 1 {
		t.Errorf("anonymous decisions{ok} grew by %v; want 1", n)
	}
	if n := decided("gatehouse/orders/gold", "degraded_open") - degBefore; n != 1 {
		t.Errorf("gold decisions{degraded_open} grew by %v; want 1", n)
	}
	// The anonymous counter did count: the next request is refused by it,
	// not by a failure mode.
	r = f.call(t, rlReq("gatehouse", gold("p"), anon))
	if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || r.Statuses[1].GetCurrentLimit().GetRequestsPerUnit() != 1 {
		t.Errorf("second answer = %v, anonymous limit %v; want OVER_LIMIT by the 1/hour counter", r.OverallCode, r.Statuses[1].GetCurrentLimit())
	}
}
