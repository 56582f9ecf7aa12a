package authz

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestMTLSBundleExpiryReported: an expiring and an expired bundle are
// /readyz warnings (the component stays ready) and metric states; a
// healthy one is neither.
func TestMTLSBundleExpiryReported(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	good := testenv.NewCA(t, "good", now.Add(-day), now.Add(3650*day))
	soon := testenv.NewCA(t, "soon", now.Add(-365*day), now.Add(time.Hour))
	gone := testenv.NewCA(t, "gone", now.Add(-365*day), now.Add(-time.Hour))
	yaml := fmt.Sprintf(`apiVersion: gatehouse/v1
authz:
  mtls:
    trustDomains:
      - {name: good.example, bundle: %q}
      - {name: soon.example, bundle: %q}
      - {name: gone.example, bundle: %q, expiryWarning: 720h}
routes:
  - {id: r, match: {prefix: /}, authz: {mtls: {}}}
`, good.PEM, soon.PEM, gone.PEM)
	// validate (and serve, at every load) warns, at the bundles' paths.
	cfg, err := config.LoadBytes("<test>", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var es config.Errors
	if err := Validate(cfg); !errors.As(err, &es) || es.HasErrors() || len(es) != 2 ||
		es[0].Path != "authz.mtls.trustDomains[1].bundle" || es[1].Path != "authz.mtls.trustDomains[2].bundle" {
		t.Errorf("Validate() = %v; want two warnings, at trustDomains[1].bundle and [2].bundle", err)
	}
	s, _, reg := newServer(t, yaml, nil)
	err = s.Ready(context.Background())
	var w *admin.Warning
	if !errors.As(err, &w) {
		t.Fatalf("Ready() = %v (%T); want an *admin.Warning", err, err)
	}
	for _, want := range []string{"soon.example: bundle (inline) expiring", "gone.example: bundle (inline) expired"} {
		if !strings.Contains(w.Msg, want) {
			t.Errorf("Ready() = %q; want %q", w.Msg, want)
		}
	}
	if strings.Contains(w.Msg, "good.example") {
		t.Errorf("Ready() = %q; names the healthy bundle", w.Msg)
	}
	want := fmt.Sprintf(`
# HELP gatehouse_authz_mtls_bundle_expiry_timestamp_seconds When the last authority of the trust domain's bundle expires: from then on no certificate of it verifies.
# TYPE gatehouse_authz_mtls_bundle_expiry_timestamp_seconds gauge
gatehouse_authz_mtls_bundle_expiry_timestamp_seconds{trust_domain="gone.example"} %d
gatehouse_authz_mtls_bundle_expiry_timestamp_seconds{trust_domain="good.example"} %d
gatehouse_authz_mtls_bundle_expiry_timestamp_seconds{trust_domain="soon.example"} %d
# HELP gatehouse_authz_mtls_bundle_state 1 for the state the trust domain's bundle is in (ok, expiring: within its expiryWarning of the expiry, expired), 0 for the others.
# TYPE gatehouse_authz_mtls_bundle_state gauge
gatehouse_authz_mtls_bundle_state{state="expired",trust_domain="gone.example"} 1
gatehouse_authz_mtls_bundle_state{state="expired",trust_domain="good.example"} 0
gatehouse_authz_mtls_bundle_state{state="expired",trust_domain="soon.example"} 0
gatehouse_authz_mtls_bundle_state{state="expiring",trust_domain="gone.example"} 0
gatehouse_authz_mtls_bundle_state{state="expiring",trust_domain="good.example"} 0
gatehouse_authz_mtls_bundle_state{state="expiring",trust_domain="soon.example"} 1
gatehouse_authz_mtls_bundle_state{state="ok",trust_domain="gone.example"} 0
gatehouse_authz_mtls_bundle_state{state="ok",trust_domain="good.example"} 1
gatehouse_authz_mtls_bundle_state{state="ok",trust_domain="soon.example"} 0
`, gone.Cert.NotAfter.Unix(), good.Cert.NotAfter.Unix(), soon.Cert.NotAfter.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gatehouse_authz_mtls_bundle_expiry_timestamp_seconds", "gatehouse_authz_mtls_bundle_state"); err != nil {
		t.Error(err)
	}

	healthy, _, _ := newServer(t, fmt.Sprintf(`apiVersion: gatehouse/v1
authz:
  mtls: {trustDomains: [{name: good.example, bundle: %q}]}
routes:
  - {id: r, match: {prefix: /}, authz: {mtls: {}}}
`, good.PEM), nil)
	if err := healthy.Ready(context.Background()); err != nil {
		t.Errorf("Ready() with a healthy bundle = %v; want nil", err)
	}
}

// TestNotReadyKeepsBundleWarnings: when authz is not ready (a key set
// not loaded), the bundle warnings are still said, beside the reason.
func TestNotReadyKeepsBundleWarnings(t *testing.T) {
	keys := newKeyServer(t, `{"keys":[]}`)
	soon := testenv.NewCA(t, "soon", time.Now().Add(-365*24*time.Hour), time.Now().Add(time.Hour))
	yaml := strings.Replace(remoteConfig(t, keys.URL), "trustDomains: [{name: example.org,",
		"trustDomains: [{name: soon.example, bundle: "+strconv.Quote(soon.PEM)+"}, {name: example.org,", 1)
	s, _, _ := newServer(t, yaml, nil)
	deadline := time.Now().Add(30 * time.Second)
	for s.remoteHealth().Errors["no_usable_key"] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the first fetch")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err := s.Ready(context.Background())
	var w *admin.Warning
	if err == nil || errors.As(err, &w) || !strings.Contains(err.Error(), "jwt issuer remote: key set not loaded") ||
		!strings.Contains(err.Error(), "warning: mtls trust domain soon.example: bundle (inline) expiring") {
		t.Errorf("Ready() = %v; want not ready (no *admin.Warning), naming the key set and warning of soon.example", err)
	}
}
