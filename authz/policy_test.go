package authz

import (
	"net/http"
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

// TestJWKSClientRedirects: the client that fetches key sets and discovery
// documents follows a few redirects, never from https down to http.
func TestJWKSClientRedirects(t *testing.T) {
	s, _, _ := newServer(t, testConfig(t), nil)
	if s.client.CheckRedirect == nil {
		t.Fatal("the JWKS client follows any redirect (10, to any scheme)")
	}
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name   string
		to     string
		via    []*http.Request
		wantOK bool
	}{
		{"https to https", "https://keys.example/jwks", []*http.Request{req("https://idp.example/jwks")}, true},
		{"http to http", "http://keys.example/jwks", []*http.Request{req("http://idp.example/jwks")}, true},
		{"https to http", "http://keys.example/jwks", []*http.Request{req("https://idp.example/jwks")}, false},
		{"https, https, then http", "http://c.example/jwks", []*http.Request{req("https://a.example/jwks"), req("https://b.example/jwks")}, false},
		{"too many", "https://d.example/jwks", []*http.Request{req("https://a.example/"), req("https://b.example/"), req("https://c.example/")}, false},
	}
	for _, tt := range tests {
		if err := s.client.CheckRedirect(req(tt.to), tt.via); (err == nil) != tt.wantOK {
			t.Errorf("CheckRedirect(%s) = %v; want ok %t", tt.name, err, tt.wantOK)
		}
	}
}
