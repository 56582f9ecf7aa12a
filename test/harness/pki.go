package harness

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	envoyboot "github.com/gatehouse/gatehouse/envoy"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Identities of the PKI a TLS mesh runs on: SPIFFE ids of the trust
// domain mesh.test, issued by one CA that is also the trust domain's
// bundle.
const (
	TrustDomain      = "mesh.test"
	GatehouseID      = "spiffe://mesh.test/gatehouse"
	GatehouseDNS     = "gatehouse.mesh.test"
	EnvoyID          = "spiffe://mesh.test/envoy/edge-1"
	AdminClientID    = "spiffe://mesh.test/ops/harness"
	sdsCertificateFn = "sds-certificate.yaml"
	sdsValidationFn  = "sds-validation.yaml"
)

// PKI is the certificates of a TLS mesh, made in the test: gatehouse's
// server certificate (an X509-SVID with a DNS name too), Envoy's client
// certificate, and the admin client the harness reads /xds/nodes with.
// Dir holds gatehouse/{tls.crt,tls.key,ca.crt}, bundle.pem (the trust
// domain's bundle), envoy/{tls.crt,tls.key,ca.crt} and sds/ (Envoy's SDS
// files naming envoy/).
type PKI struct {
	Dir   string
	CA    *testenv.CA
	admin *testenv.Cert
	t     testing.TB
}

func newPKI(t testing.TB, dir string) *PKI {
	t.Helper()
	p := &PKI{Dir: dir, CA: testenv.NewRootCA(t, "mesh.test"), t: t}
	p.CA.Issue(t, testenv.Issue{URIs: []string{GatehouseID}, DNS: []string{GatehouseDNS}}).Write(t, filepath.Join(dir, "gatehouse"), p.CA)
	p.CA.Issue(t, testenv.Issue{URIs: []string{EnvoyID}}).Write(t, filepath.Join(dir, "envoy"), p.CA)
	p.admin = p.CA.Issue(t, testenv.Issue{URIs: []string{AdminClientID}})
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), []byte(p.CA.PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "sds"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := envoyboot.WriteSDS(filepath.Join(dir, "sds"), filepath.Join(dir, "envoy")); err != nil {
		t.Fatal(err)
	}
	return p
}

// SDSCertificate and SDSValidation are the paths of Envoy's SDS files, for
// xds.services.tls.
func (p *PKI) SDSCertificate() string { return filepath.Join(p.Dir, "sds", sdsCertificateFn) }

// SDSValidation is the path of the SDS file of Envoy's trust roots.
func (p *PKI) SDSValidation() string { return filepath.Join(p.Dir, "sds", sdsValidationFn) }

func (p *PKI) envoyTLS() *envoyboot.TLS {
	return &envoyboot.TLS{SDSDir: filepath.Join(p.Dir, "sds"), SNI: GatehouseDNS, ServerIdentity: GatehouseID}
}

// ClientTLS is a client TLS config that verifies gatehouse and presents
// cert (none when nil).
func (p *PKI) ClientTLS(cert *tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Cert)
	c := &tls.Config{RootCAs: roots, ServerName: GatehouseDNS}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// AdminClient is an HTTPS client with the admin client's certificate.
func (p *PKI) AdminClient() *http.Client {
	cert := p.admin.TLS
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: p.ClientTLS(&cert)}}
}
