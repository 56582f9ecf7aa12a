package extproc

import "github.com/prometheus/client_golang/prometheus"

// budgetMetrics are the budget stage's collectors. Tier labels are the
// budget's configured tiers, "default" or "unlimited": a bounded set.
type budgetMetrics struct {
	requests    *prometheus.CounterVec
	costs       *prometheus.CounterVec
	settlements *prometheus.CounterVec
	expiries    *prometheus.CounterVec
}

func newBudgetMetrics(reg prometheus.Registerer) (*budgetMetrics, error) {
	m := &budgetMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_budget_requests_total",
			Help: "Requests on budget routes by route, tier and result: admitted (reserved), refused (429), unlimited (the tier has no budget), store_error_open, store_error_closed.",
		}, []string{"route", "tier", "result"}),
		costs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_budget_cost_total",
			Help: "Cost in the budget's unit by route, tier and kind: reserved (estimates), settled (actual costs), refunded (reserved but not spent), extra (spent beyond the estimate).",
		}, []string{"route", "tier", "kind"}),
		settlements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_budget_settlements_total",
			Help: "Settlements by route and status: settled, duplicate (already settled), late (after the reservation expired), unknown, error (the store did not answer; the reservation expires).",
		}, []string{"route", "status"}),
		expiries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_extproc_budget_expired_total",
			Help: "Orphaned reservations (never settled) reconciled by a later reservation of the same budget, by route and tier of that reservation.",
		}, []string{"route", "tier"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.costs, m.settlements, m.expiries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *budgetMetrics) request(route, tier, result string) {
	m.requests.WithLabelValues(route, tier, result).Inc()
}

func (m *budgetMetrics) cost(route, tier, kind string, n uint64) {
	m.costs.WithLabelValues(route, tier, kind).Add(float64(n))
}

func (m *budgetMetrics) settlement(route, st string) {
	m.settlements.WithLabelValues(route, st).Inc()
}

func (m *budgetMetrics) expired(route, tier string, n int) {
	m.expiries.WithLabelValues(route, tier).Add(float64(n))
}

// forget drops a removed route's series.
func (m *budgetMetrics) forget(route string) {
	for _, v := range []*prometheus.CounterVec{m.requests, m.costs, m.settlements, m.expiries} {
		v.DeletePartialMatch(prometheus.Labels{"route": route})
	}
}
