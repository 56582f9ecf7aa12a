package servertls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

type pki struct {
	dir              string
	mesh, spire, bad *testenv.CA
}

// newPKI writes gatehouse's certificate (from the mesh CA) and two sets of
// trust roots: the mesh CA as PEM roots, and a SPIFFE bundle (JSON-free
// PEM) for the trust domain spire.test.
func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), mesh: testenv.NewRootCA(t, "mesh"), spire: testenv.NewRootCA(t, "spire"), bad: testenv.NewRootCA(t, "stranger")}
	p.mesh.Issue(t, testenv.Issue{DNS: []string{"gatehouse.test"}}).Write(t, filepath.Join(p.dir, "server"), p.mesh)
	if err := os.WriteFile(filepath.Join(p.dir, "spire-bundle.pem"), []byte(p.spire.PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) config(t *testing.T, allow ...string) *config.ServerTLS {
	t.Helper()
	c := &config.ServerTLS{
		CertFile:     config.WatchedFile(filepath.Join(p.dir, "server", "tls.crt")),
		KeyFile:      config.WatchedFile(filepath.Join(p.dir, "server", "tls.key")),
		ClientCAFile: config.WatchedFile(filepath.Join(p.dir, "server", "ca.crt")),
		SPIFFEBundles: []config.SPIFFEBundle{{
			TrustDomain: config.MustSPIFFETrustDomain("spire.test"),
			File:        config.WatchedFile(filepath.Join(p.dir, "spire-bundle.pem")),
		}},
	}
	for _, a := range allow {
		c.Allow = append(c.Allow, config.MustCaller(a))
	}
	return c
}

// serve accepts TLS connections with the server's config and answers
// "ok" on each; it returns the address.
func serve(t *testing.T, s *Source, callers []config.Caller) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", s.ServerConfig("ratelimit", callers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte("ok"))
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// call connects with cert (none when nil), trusting the mesh CA, and
// returns the server's certificate and what it answered.
func call(addr string, roots *x509.CertPool, cert *tls.Certificate) (*x509.Certificate, string, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "gatehouse.test"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return c.ConnectionState().PeerCertificates[0], string(b), err
}

func TestCallers(t *testing.T) {
	p := newPKI(t)
	reg := prometheus.NewRegistry()
	s, err := New(p.config(t), reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, s, []config.Caller{
		config.MustCaller("spiffe://spire.test/envoy/*"),
		config.MustCaller("dns:*.edge.test"),
	})
	roots := x509.NewCertPool()
	roots.AddCert(p.mesh.Cert)

	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		reason string // "" admitted
	}{
		{"spiffe id under the prefix, by its bundle", ptr(p.spire.Issue(t, testenv.Issue{URIs: []string{"spiffe://spire.test/envoy/edge-1"}}).TLS), ""},
		{"dns SAN by the CA file", ptr(p.mesh.Issue(t, testenv.Issue{DNS: []string{"envoy-1.edge.test"}}).TLS), ""},
		{"spiffe id outside the prefix", ptr(p.spire.Issue(t, testenv.Issue{URIs: []string{"spiffe://spire.test/billing"}}).TLS), ReasonNotAllowed},
		{"the prefix itself", ptr(p.spire.Issue(t, testenv.Issue{URIs: []string{"spiffe://spire.test/envoy"}}).TLS), ReasonNotAllowed},
		{"dns SAN two labels deep", ptr(p.mesh.Issue(t, testenv.Issue{DNS: []string{"a.b.edge.test"}}).TLS), ReasonNotAllowed},
		{"allowed id from a stranger's CA", ptr(p.bad.Issue(t, testenv.Issue{URIs: []string{"spiffe://spire.test/envoy/edge-1"}}).TLS), ReasonUntrusted},
		{"allowed name from a stranger's CA", ptr(p.bad.Issue(t, testenv.Issue{DNS: []string{"envoy-1.edge.test"}}).TLS), ReasonUntrusted},
		{"spiffe id of the wrong trust domain signed by the mesh CA", ptr(p.mesh.Issue(t, testenv.Issue{URIs: []string{"spiffe://other.test/envoy/x"}}).TLS), ReasonNotAllowed},
		{"no certificate", nil, ReasonNoCertificate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(s.m.refused.WithLabelValues("ratelimit", tc.reason))
			_, got, err := call(addr, roots, tc.cert)
			if tc.reason == "" {
				if err != nil || got != "ok" {
					t.Fatalf("call = %q, %v; want admitted", got, err)
				}
				return
			}
			if err == nil && got == "ok" {
				t.Fatalf("call admitted; want refused (%s)", tc.reason)
			}
			if after := testutil.ToFloat64(s.m.refused.WithLabelValues("ratelimit", tc.reason)); after != before+1 {
				t.Fatalf("gatehouse_tls_refused_total{reason=%q} went %v → %v; want +1", tc.reason, before, after)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestReloadOnSecretSwap rotates the server certificate the way the kubelet
// updates a mounted Secret (a new ..data directory swapped in by rename)
// and sees new handshakes get the new certificate; a broken rotation (a
// key of another certificate) keeps the last good pair serving.
func TestReloadOnSecretSwap(t *testing.T) {
	p := newPKI(t)
	mount := filepath.Join(p.dir, "mount")
	swap := testenv.ConfigMap(t, mount)
	first := p.mesh.Issue(t, testenv.Issue{DNS: []string{"gatehouse.test"}})
	swap(map[string]string{"tls.crt": first.PEM, "tls.key": first.KeyPEM, "ca.crt": p.mesh.PEM})
	cfg := p.config(t, "*")
	cfg.CertFile = config.WatchedFile(filepath.Join(mount, "tls.crt"))
	cfg.KeyFile = config.WatchedFile(filepath.Join(mount, "tls.key"))
	s, err := New(cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	addr := serve(t, s, cfg.Allow)
	roots := x509.NewCertPool()
	roots.AddCert(p.mesh.Cert)
	client := ptr(p.mesh.Issue(t, testenv.Issue{DNS: []string{"envoy.test"}}).TLS)
	serving := func() *x509.Certificate {
		c, _, err := call(addr, roots, client)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	waitServing := func(want *x509.Certificate) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !serving().Equal(want) {
			if time.Now().After(deadline) {
				t.Fatalf("the server still serves serial %v; want %v", serving().SerialNumber, want.SerialNumber)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitServing(first.Cert)

	second := p.mesh.Issue(t, testenv.Issue{DNS: []string{"gatehouse.test"}})
	swap(map[string]string{"tls.crt": second.PEM, "tls.key": second.KeyPEM, "ca.crt": p.mesh.PEM})
	waitServing(second.Cert)

	// A certificate with the key of another: rejected, the second stays.
	third := p.mesh.Issue(t, testenv.Issue{DNS: []string{"gatehouse.test"}})
	before := testutil.ToFloat64(s.m.reloads.WithLabelValues("rejected"))
	swap(map[string]string{"tls.crt": third.PEM, "tls.key": first.KeyPEM, "ca.crt": p.mesh.PEM})
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.m.reloads.WithLabelValues("rejected")) == before {
		if time.Now().After(deadline) {
			t.Fatal("the broken rotation was not reported as a rejected reload")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := serving(); !got.Equal(second.Cert) {
		t.Fatalf("after a broken rotation the server serves serial %v; want the last good %v", got.SerialNumber, second.Cert.SerialNumber)
	}
}

func TestNewNamesTheFileThatDoesNotLoad(t *testing.T) {
	p := newPKI(t)
	cfg := p.config(t, "*")
	if err := os.WriteFile(filepath.Join(p.dir, "spire-bundle.pem"), []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "spire-bundle.pem") {
		t.Fatalf("New() = %v; want an error naming spire-bundle.pem", err)
	}
}
