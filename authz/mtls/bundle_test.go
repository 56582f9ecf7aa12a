package mtls

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestBundleStatus: a bundle is expiring within its expiryWarning of its
// last authority's end, expired after it; with no expiryWarning, a
// short-lived CA is judged by a third of its lifetime, not by a week.
func TestBundleStatus(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	tests := []struct {
		name    string
		cas     []*testenv.CA
		warning time.Duration
		want    BundleState
		warnIs  time.Duration
	}{
		{"ten-year CA", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-day), now.Add(3650*day))}, 0, BundleOK, 7 * day},
		{"ten-year CA with a day left", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-3650*day), now.Add(day))}, 0, BundleExpiring, 7 * day},
		{"SPIRE-like 24h CA at half life", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-12*time.Hour), now.Add(12*time.Hour))}, 0, BundleOK, 8 * time.Hour},
		{"SPIRE-like 24h CA with 6h left", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-18*time.Hour), now.Add(6*time.Hour))}, 0, BundleExpiring, 8 * time.Hour},
		{"expired", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-30*day), now.Add(-time.Minute))}, 0, BundleExpired, 7 * day},
		{"expiryWarning of 30 days, 10 left", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-day), now.Add(10*day))}, 30 * day, BundleExpiring, 30 * day},
		{"expiryWarning of 1h, 10 days left", []*testenv.CA{testenv.NewCA(t, "a", now.Add(-3650*day), now.Add(10*day))}, time.Hour, BundleOK, time.Hour},
		{"old CA expired, its successor valid", []*testenv.CA{
			testenv.NewCA(t, "old", now.Add(-400*day), now.Add(-day)),
			testenv.NewCA(t, "new", now.Add(-day), now.Add(365*day)),
		}, 0, BundleOK, 7 * day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pemText string
			latest := time.Time{}
			for _, ca := range tt.cas {
				pemText += ca.PEM
				if ca.Cert.NotAfter.After(latest) {
					latest = ca.Cert.NotAfter
				}
			}
			tr, err := NewTrust(&config.AuthzMTLS{TrustDomains: []config.TrustDomain{
				{Name: config.MustSPIFFETrustDomain("example.org"), Bundle: pemText, ExpiryWarning: config.Duration(tt.warning)},
			}})
			if err != nil {
				t.Fatal(err)
			}
			got := tr.Bundles(now)
			if len(got) != 1 {
				t.Fatalf("Bundles() = %v; want one", got)
			}
			b := got[0]
			if b.State != tt.want || b.Warning != tt.warnIs || !b.Expires.Equal(latest) || b.Authorities != len(tt.cas) || b.Source != "inline" {
				t.Errorf("Bundles() = %+v; want state %s, warning %s, expires %s, %d authorities, source inline", b, tt.want, tt.warnIs, latest, len(tt.cas))
			}
			p := b.Problem(now)
			if (p == "") != (tt.want == BundleOK) || (p != "" && (!strings.Contains(p, "example.org") || !strings.Contains(p, string(tt.want)))) {
				t.Errorf("Problem() = %q; want a text naming example.org and %q, or none when ok", p, tt.want)
			}
		})
	}
}

// TestExpiredBundleVerifiesNothing: what "expired" reports is true: a
// certificate of an expired CA no longer verifies.
func TestExpiredBundleVerifiesNothing(t *testing.T) {
	now := time.Now()
	ca := testenv.NewCA(t, "expired", now.Add(-2*time.Hour), now.Add(-time.Minute))
	leaf := leaf(t, ca, "spiffe://example.org/ns/a/sa/b")
	tr, err := NewTrust(&config.AuthzMTLS{TrustDomains: []config.TrustDomain{{Name: config.MustSPIFFETrustDomain("example.org"), Bundle: ca.PEM}}})
	if err != nil {
		t.Fatal(err)
	}
	a := tr.Authenticator(&config.RouteMTLS{VerifyCertificate: ptr(true)})
	if _, code := a.Identify(&core.Request{SourceCertificate: leaf, Headers: map[string]string{}}, nil); code != core.MTLSUntrusted {
		t.Errorf("Identify(certificate of an expired CA) = %v; want %v", code, core.MTLSUntrusted)
	}
	if st := tr.Bundles(now)[0].State; st != BundleExpired {
		t.Errorf("Bundles()[0].State = %s; want expired", st)
	}
}
