package mtls

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"

	"github.com/gatehouse/gatehouse/internal/config"
)

// bundle is one trust domain's X.509 bundle as loaded, with what its
// expiry report needs.
type bundle struct {
	x509 *x509bundle.Bundle
	// source is the bundle file, or "inline".
	source string
	// expires is when the last of its authorities expires: from then on
	// no certificate of the trust domain verifies.
	expires time.Time
	// warning is how long before expires the bundle is reported.
	warning time.Duration
}

// BundleState is how close a bundle is to verifying nothing.
type BundleState string

// Bundle states, also the values of the state label of
// gatehouse_authz_mtls_bundle_state.
const (
	BundleOK       BundleState = "ok"
	BundleExpiring BundleState = "expiring"
	BundleExpired  BundleState = "expired"
)

// BundleStates lists every state, in the order of the metric's series.
var BundleStates = []BundleState{BundleOK, BundleExpiring, BundleExpired}

// BundleStatus is a trust domain's bundle as /readyz and the metrics
// report it.
type BundleStatus struct {
	TrustDomain string
	// Source is the bundle file, or "inline".
	Source string
	// Authorities is how many CA certificates the bundle holds.
	Authorities int
	// Expires is when its last authority expires.
	Expires time.Time
	// Warning is how long before Expires it is reported as expiring.
	Warning time.Duration
	State   BundleState
}

// Problem says what is wrong with the bundle, or "" when it is ok.
func (s BundleStatus) Problem(now time.Time) string {
	switch s.State {
	case BundleExpired:
		return fmt.Sprintf("mtls trust domain %s: bundle (%s) expired at %s: every authority in it has, so no certificate of the trust domain verifies",
			s.TrustDomain, s.Source, s.Expires.UTC().Format(time.RFC3339))
	case BundleExpiring:
		return fmt.Sprintf("mtls trust domain %s: bundle (%s) expiring: its last authority ends at %s, in %s (expiryWarning %s)",
			s.TrustDomain, s.Source, s.Expires.UTC().Format(time.RFC3339), s.Expires.Sub(now).Truncate(time.Second), s.Warning)
	}
	return ""
}

// status reports the bundle at now.
func (b *bundle) status(now time.Time) BundleStatus {
	s := BundleStatus{
		TrustDomain: b.x509.TrustDomain().Name(),
		Source:      b.source,
		Authorities: len(b.x509.X509Authorities()),
		Expires:     b.expires,
		Warning:     b.warning,
		State:       BundleOK,
	}
	switch {
	case !now.Before(b.expires):
		s.State = BundleExpired
	case b.expires.Sub(now) <= b.warning:
		s.State = BundleExpiring
	}
	return s
}

// autoWarningMax bounds the expiry warning of a bundle whose trust domain
// sets none: the shorter of a week and a third of the lifetime of the
// authority that expires last, so that a short-lived CA (SPIRE's default
// is 24 hours, renewed well before its end) is not always "expiring".
const autoWarningMax = 7 * 24 * time.Hour

// loadBundles reads the trust domains' X.509 bundles: PEM CA
// certificates, or a SPIFFE bundle JSON document (starts with "{").
// Errors name the trust domain's config path.
func loadBundles(tds []config.TrustDomain) ([]*bundle, error) {
	var out []*bundle
	var errs config.Errors
	for i, tdc := range tds {
		p := config.Path("authz.mtls.trustDomains").Index(i)
		td := tdc.Name.TrustDomain()
		data := []byte(tdc.Bundle)
		field, source := "bundle", "inline"
		var err error
		if tdc.BundleFile != "" {
			field, source = "bundleFile", tdc.BundleFile.String()
			if data, err = os.ReadFile(source); err != nil {
				errs.Add(p.Field(field), "cannot read: %v", err)
				continue
			}
		}
		var b *x509bundle.Bundle
		if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			sb, err := spiffebundle.Parse(td, data)
			if err != nil {
				errs.Add(p.Field(field), "not a SPIFFE bundle: %v", err)
				continue
			}
			b = sb.X509Bundle()
		} else if b, err = x509bundle.Parse(td, data); err != nil {
			errs.Add(p.Field(field), "not PEM CA certificates: %v", err)
			continue
		}
		auths := b.X509Authorities()
		if len(auths) == 0 {
			errs.Add(p.Field(field), "holds no X.509 authority")
			continue
		}
		nb := &bundle{x509: b, source: source, warning: tdc.ExpiryWarning.D()}
		var life time.Duration
		for _, c := range auths {
			if c.NotAfter.After(nb.expires) {
				nb.expires = c.NotAfter
				life = c.NotAfter.Sub(c.NotBefore)
			}
		}
		if nb.warning == 0 {
			nb.warning = min(autoWarningMax, life/3)
		}
		out = append(out, nb)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}
