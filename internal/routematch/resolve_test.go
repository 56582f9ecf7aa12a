package routematch

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// TestResolve holds each component's written policy for an unknown route
// id (internal/contract) to what the one resolver does with it.
func TestResolve(t *testing.T) {
	routes := []config.Route{
		{ID: "orders", Match: config.Match{Prefix: "/orders"}},
		{ID: "users", Match: config.Match{Prefix: "/users"}},
	}
	byID := map[string]string{"orders": "compiled orders", "users": "compiled users"}
	orders := &Request{Host: "api", Path: "/orders/1", Method: "GET"}
	nowhere := &Request{Host: "api", Path: "/nowhere", Method: "GET"}
	tests := []struct {
		name    string
		policy  contract.UnknownRoutePolicy
		req     *Request
		ids     []string
		want    string
		wantBy  Resolution
		wantID  string
		wantIdx int
	}{
		{"id wins over matching", contract.AuthzUnknownRoute, orders, []string{"users"}, "compiled users", ByID, "users", 0},
		{"second id when the first is absent", contract.ExtProcUnknownRoute, orders, []string{"", "users"}, "compiled users", ByID, "users", 1},
		{"second id when the first is unknown", contract.ExtProcUnknownRoute, orders, []string{"gone", "users"}, "compiled users", ByID, "users", 1},
		{"no id: match", contract.AuthzUnknownRoute, orders, []string{""}, "compiled orders", ByMatch, "orders", -1},
		{"no id, no match", contract.AuthzUnknownRoute, nowhere, nil, "", NoMatch, "", -1},
		{"no id, no request", contract.RateLimitUnknownRoute, nil, []string{""}, "", NoMatch, "", -1},

		// authz: an unknown id is refused without matching.
		{"authz: unknown id", contract.AuthzUnknownRoute, orders, []string{"gone"}, "", UnknownID, "gone", -1},
		// extproc: an unknown id falls back to matching.
		{"extproc: unknown id, match", contract.ExtProcUnknownRoute, orders, []string{"gone"}, "compiled orders", ByMatch, "orders", -1},
		{"extproc: unknown id, no match", contract.ExtProcUnknownRoute, nowhere, []string{"gone", ""}, "", UnknownID, "gone", -1},
		// ratelimit: an unknown id gets no route (answered OK), and there
		// is no request to match.
		{"ratelimit: unknown id", contract.RateLimitUnknownRoute, nil, []string{"gone"}, "", UnknownID, "gone", -1},
		{"ratelimit: unknown id even with a request", contract.RateLimitUnknownRoute, orders, []string{"gone"}, "", UnknownID, "gone", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewResolver(routes, byID, tt.policy)
			var req func() *Request
			if tt.req != nil {
				req = func() *Request { return tt.req }
			}
			got, by, id, idx := r.Resolve(req, tt.ids...)
			if got != tt.want || by != tt.wantBy || id != tt.wantID || idx != tt.wantIdx {
				t.Errorf("Resolve(%v, %q) = %q, %d, %q, %d; want %q, %d, %q, %d", tt.req, tt.ids, got, by, id, idx, tt.want, tt.wantBy, tt.wantID, tt.wantIdx)
			}
		})
	}
}
