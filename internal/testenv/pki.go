package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority made for a test (ECDSA P-256).
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM-encoded: a trust bundle of one.
	PEM string
}

// Cert is a certificate a test CA issued, with its key.
type Cert struct {
	Cert *x509.Certificate
	// PEM and KeyPEM are the certificate and its PKCS#8 key, PEM-encoded.
	PEM, KeyPEM string
	// TLS is the pair for a Go TLS client or server.
	TLS tls.Certificate
}

// Issue says what a certificate is for.
type Issue struct {
	// URIs are URI SANs: a SPIFFE id has exactly one.
	URIs []string
	// Server makes a server certificate for localhost and 127.0.0.1 (it
	// can also authenticate a client).
	Server bool
	// CN is the subject's common name (default: the first URI).
	CN string
	// DNS and IPs are further SANs; either makes the certificate a server
	// certificate too.
	DNS []string
	IPs []net.IP
	// NotAfter defaults to a day from now.
	NotAfter time.Time
}

var serial atomic.Int64

func init() { serial.Store(time.Now().UnixNano()) }

// NewCA makes a self-signed CA valid from notBefore to notAfter.
func NewCA(t testing.TB, cn string, notBefore, notAfter time.Time) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	return sign(t, tmpl, tmpl, key, key)
}

// NewRootCA makes a self-signed CA valid for a day from an hour ago.
func NewRootCA(t testing.TB, cn string) *CA {
	t.Helper()
	return NewCA(t, cn, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// Intermediate makes a CA that ca signs, valid for an hour either side
// of now.
func (ca *CA) Intermediate(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	return sign(t, tmpl, ca.Cert, key, ca.Key)
}

// Issue makes a certificate ca signs, valid from an hour ago until
// o.NotAfter (default: a day from now).
func (ca *CA) Issue(t testing.TB, o Issue) *Cert {
	t.Helper()
	key := newKey(t)
	notAfter := o.NotAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: o.CN},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, DNSNames: o.DNS, IPAddresses: o.IPs,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, u := range o.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if tmpl.Subject.CommonName == "" {
		tmpl.Subject.CommonName = "client"
		if len(o.URIs) > 0 {
			tmpl.Subject.CommonName = o.URIs[0]
		}
	}
	if o.Server {
		tmpl.DNSNames = append(tmpl.DNSNames, "localhost")
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
	}
	if o.Server || len(o.DNS) > 0 || len(o.IPs) > 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cert{
		PEM:    string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
	}
	if c.Cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	if c.TLS, err = tls.X509KeyPair([]byte(c.PEM), []byte(c.KeyPEM)); err != nil {
		t.Fatal(err)
	}
	return c
}

// Forwarded is the certificate as Envoy forwards it to ext_authz
// (include_peer_certificate) and in XFCC: URL-encoded PEM.
func (c *Cert) Forwarded() string { return url.PathEscape(c.PEM) }

// Write writes the certificate, its key and the CA as dir/tls.crt,
// dir/tls.key and dir/ca.crt, the keys of a cert-manager Secret.
func (c *Cert) Write(t testing.TB, dir string, ca *CA) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]string{"tls.crt": c.PEM, "tls.key": c.KeyPEM, "ca.crt": ca.PEM} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *CA {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}
