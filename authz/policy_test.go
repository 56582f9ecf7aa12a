package authz

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

// TestClaimMatchByText: booleans and numbers compare by their JSON text
// (docs/authz.md), whatever their size: a JSON number is decoded as a
// float64, which fmt would print as 1e+06.
func TestClaimMatchByText(t *testing.T) {
	claims := map[string]any{"org_id": float64(1000000), "ratio": 1.5, "admin": true, "ids": []any{float64(12345678)}}
	tests := []struct {
		claim, equals string
		want          bool
	}{
		{"org_id", "1000000", true},
		{"org_id", "1e+06", false},
		{"ratio", "1.5", true},
		{"admin", "true", true},
		{"ids", "12345678", true},
	}
	for _, tt := range tests {
		c := claimMatcher{path: []string{tt.claim}, m: config.ClaimMatch{Claim: tt.claim, Equals: tt.equals}}
		if got := c.match(claims); got != tt.want {
			t.Errorf("claim %s equals %q: match = %t; want %t", tt.claim, tt.equals, got, tt.want)
		}
	}
}
