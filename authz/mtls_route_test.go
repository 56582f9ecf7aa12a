package authz

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestMTLSPerRoute: two routes with different trust on one server; the
// strict one refuses what the other accepts, with the reason audited.
func TestMTLSPerRoute(t *testing.T) {
	now := time.Now()
	prod := testenv.NewCA(t, "prod", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	partner := testenv.NewCA(t, "partner", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	s, rec, _ := newServer(t, fmt.Sprintf(`apiVersion: gatehouse/v1
authz:
  mtls:
    trustDomains:
      - {name: prod.example, bundle: %q}
      - {name: partner.example, bundle: %q}
    verifyCertificate: true
routes:
  - {id: strict, match: {prefix: /strict}, authz: {mtls: {trustDomains: [prod.example]}}}
  - {id: partners, match: {prefix: /partners}, authz: {mtls: {}}}
  - {id: lax, match: {prefix: /lax}, authz: {mtls: {verifyCertificate: false}}}
`, prod.PEM, partner.PEM), nil)
	web := prod.Issue(t, testenv.Issue{URIs: []string{"spiffe://prod.example/ns/web/sa/web"}}).Forwarded()
	app := partner.Issue(t, testenv.Issue{URIs: []string{"spiffe://partner.example/app"}}).Forwarded()
	impostor := partner.Issue(t, testenv.Issue{URIs: []string{"spiffe://prod.example/ns/web/sa/web"}}).Forwarded()
	tests := []struct {
		route, cert, principal string
		want                   int
		reason, subject        string
	}{
		{"strict", web, "", 200, "allowed", "spiffe://prod.example/ns/web/sa/web"},
		{"strict", app, "", 403, "mtls_untrusted", ""},
		{"strict", impostor, "", 403, "mtls_untrusted", ""},
		{"strict", "", "spiffe://prod.example/ns/web/sa/web", 403, "mtls_untrusted", ""},
		{"partners", app, "", 200, "allowed", "spiffe://partner.example/app"},
		{"partners", impostor, "", 403, "mtls_untrusted", ""},
		{"lax", impostor, "", 200, "allowed", "spiffe://prod.example/ns/web/sa/web"},
		{"lax", "", "spiffe://prod.example/ns/web/sa/web", 200, "allowed", "spiffe://prod.example/ns/web/sa/web"},
	}
	for i, tt := range tests {
		resp, err := s.Check(context.Background(), check{route: tt.route, path: "/" + tt.route, cert: tt.cert, principal: tt.principal}.request())
		if err != nil {
			t.Fatal(err)
		}
		ev := rec.last(audit.KindDecision)
		if got := status(resp); got != tt.want || ev.Reason != tt.reason || ev.Route != tt.route {
			t.Errorf("[%d] Check(%s) = %d, audited %s on %s; want %d %s", i, tt.route, got, ev.Reason, ev.Route, tt.want, tt.reason)
		}
		if tt.subject != "" && (ev.Subject != tt.subject || ev.SPIFFEID != tt.subject) {
			t.Errorf("[%d] Check(%s) audited subject %q SPIFFE id %q; want %q", i, tt.route, ev.Subject, ev.SPIFFEID, tt.subject)
		}
	}
}
