package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const budgetRoute = `extproc: {}
routes:
  - id: chat
    match: {prefix: /v1/chat}
    budget:
      name: tokens
      tiers:
        free: [{amount: 10000, per: month, calendar: true}, {amount: 1000, per: minute}]
        pro: [{amount: 1000000, per: month, calendar: true}]
      timeZone: Europe/Berlin
      reserve: {jsonPath: $.max_tokens, fixed: 256, max: 4096}
      cost: {from: json, jsonPath: $.usage.total_tokens}
`

func TestBudgetConfig(t *testing.T) {
	cfg, err := loadExtProc(t, budgetRoute)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Routes[0].Budget
	if b.Unit != "tokens" || b.Hold.D().Minutes() != 10 || b.OnExpiry != ExpiryCharge || b.FailureMode != FailClosed || !b.Audit || b.KeyBy != KeyBySubject {
		t.Errorf("defaults not applied: %+v", b)
	}
	if got := b.Reserve.JSONPath.String(); got != "$.max_tokens" {
		t.Errorf("reserve.jsonPath = %q", got)
	}
	if got := b.BudgetTimeZone(cfg).String(); got != "Europe/Berlin" {
		t.Errorf("time zone = %q", got)
	}
	want := BudgetNeeds{Enabled: true, RequestBody: BodyBuffered, ResponseBody: BodyStreamed, MaxBodyBytes: 1 << 20}
	if d := cmp.Diff(want, cfg.Routes[0].BudgetNeeds(cfg)); d != "" {
		t.Errorf("BudgetNeeds (-want +got):\n%s", d)
	}
}

func TestBudgetValidation(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"needs extproc", strings.Replace(budgetRoute, "extproc: {}\n", "", 1), []string{"routes[0].budget: needs the extproc section"}},
		{"bad values", `extproc: {}
routes:
  - id: r
    match: {prefix: /}
    budget:
      name: "a b"
      unit: Tokens
      tiers: {free: [{amount: 0, per: minute}, {amount: 5, per: minute}, {amount: 5, per: hour, calendar: true}]}
      keyBy: tenant
      reserve: {header: X-Max, jsonPath: $.max_tokens, min: 10, max: 5}
      cost: {from: json}
      hold: 0s
`, []string{
			`routes[0].budget.name: "a b" is not a budget name`,
			`routes[0].budget.unit: "Tokens" is not a unit`,
			`routes[0].budget.tiers.free[0].amount: 0 is out of range`,
			`routes[0].budget.tiers.free[1].per: the same window as [0]`,
			`routes[0].budget.tiers.free[2].calendar: applies to day, week and month windows, not hour`,
			`routes[0].budget.keyBy: "tenant" is not a key`,
			`routes[0].budget.reserve.header: "X-Max" is not a header name`,
			`routes[0].budget.reserve: reads the estimate from a header or a JSON path, not both`,
			`routes[0].budget.reserve.min: 10 is more than max 5`,
			`routes[0].budget.cost.jsonPath: is required with from: json`,
			`routes[0].budget.hold: 0s is out of range`,
		}},
		{"no limits, no source", `extproc: {}
routes:
  - {id: r, match: {prefix: /}, budget: {name: b, tiers: {free: []}}}
`, []string{"routes[0].budget: limits no tier", "routes[0].budget.cost.from: is required"}},
		{"served to gRPC clients", `extproc: {}
listeners:
  - {name: web, address: 127.0.0.1:8080}
  - {name: echo.test, kind: grpc}
clusters:
  - {name: echo, endpoints: [{address: 10.0.0.1:50051}]}
routes:
  - id: rpc
    listeners: [echo.test]
    cluster: echo
    match: {prefix: /}
    budget: {name: b, default: [{amount: 1, per: day}], cost: {from: bytes}}
`, []string{"routes[0].budget: cannot apply to proxyless gRPC clients"}},
		{"bad path", `extproc: {}
routes:
  - {id: r, match: {prefix: /}, budget: {name: b, default: [{amount: 1, per: day}], cost: {from: json, jsonPath: usage}}}
`, []string{"routes[0].budget.cost.jsonPath", "start it with $"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadExtProc(t, tc.body)
			if err == nil {
				t.Fatal("config loaded; want errors")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("errors lack %q:\n%v", w, err)
				}
			}
		})
	}
}
