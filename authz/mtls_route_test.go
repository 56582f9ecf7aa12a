package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
)

// testCA is a CA made for one test, valid from notBefore to notAfter.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t testing.TB, cn string, notBefore, notAfter time.Time) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// leaf issues a client certificate for a SPIFFE id, as Envoy forwards it
// (URL-encoded PEM).
func (ca *testCA) leaf(t testing.TB, spiffeID string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// TestMTLSPerRoute: two routes with different trust on one server; the
// strict one refuses what the other accepts, with the reason audited.
func TestMTLSPerRoute(t *testing.T) {
	now := time.Now()
	prod := newTestCA(t, "prod", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	partner := newTestCA(t, "partner", now.Add(-time.Hour), now.Add(365*24*time.Hour))
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
`, prod.pem, partner.pem), nil)
	web := prod.leaf(t, "spiffe://prod.example/ns/web/sa/web")
	app := partner.leaf(t, "spiffe://partner.example/app")
	impostor := partner.leaf(t, "spiffe://prod.example/ns/web/sa/web")
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
