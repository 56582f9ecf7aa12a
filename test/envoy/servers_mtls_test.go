package envoy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/test/harness"
)

func serversMTLSOptions(t testing.TB) harness.Options {
	b, err := os.ReadFile(filepath.Join("testdata", "servers-mtls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return harness.Options{Config: string(b), TLS: true, Upstreams: []string{"echo"}}
}

// TestServersMTLS: Envoy reaches ADS, ext_authz, ext_proc and the rate limit
// service over mutual TLS with its own certificate, and the whole chain
// answers; a client without an admitted certificate is refused by every
// server, the sensitive admin pages included.
func TestServersMTLS(t *testing.T) {
	m := harness.Start(t, serversMTLSOptions(t))
	g := m.Gatehouse[0]

	t.Run("chain", func(t *testing.T) {
		resp := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/orders/1", Headers: []string{"x-api-key: gh_demo_apikey_0123456789abcdef"}})
		echo, ok := resp.Echo()
		if resp.Status != http.StatusOK || !ok {
			t.Fatalf("GET /orders/1 = %d %s; want 200 from the upstream", resp.Status, resp.Body)
		}
		if got := echo.Header("x-gatehouse-subject"); got != "demo-partner" {
			t.Errorf("upstream saw x-gatehouse-subject %q; want demo-partner (ext_authz answered)", got)
		}
		if got := resp.Header.Get("x-content-type-options"); got != "nosniff" {
			t.Errorf("x-content-type-options = %q; want nosniff (ext_proc answered)", got)
		}
		if resp.Header.Get("x-ratelimit-limit") == "" {
			t.Errorf("no x-ratelimit-limit header; want the rate limit service's answer:\n%v", resp.Header)
		}
		// Envoy's own witness: TLS handshakes on every gatehouse cluster,
		// and none failed.
		for _, c := range []string{"gatehouse.xds", "gatehouse.authz", "gatehouse.extproc", "gatehouse.ratelimit"} {
			if n := m.Envoy.Stat("cluster." + c + ".ssl.handshake"); n < 1 {
				t.Errorf("cluster.%s.ssl.handshake = %d; want TLS to gatehouse", c, n)
			}
			if n := m.Envoy.Stat("cluster." + c + ".ssl.connection_error"); n > 0 {
				t.Errorf("cluster.%s.ssl.connection_error = %d", c, n)
			}
		}
	})

	// Three callers that must not get in: no certificate, an admitted id
	// from a CA gatehouse does not trust, a trusted certificate of an id
	// no list names.
	stranger := testenv.NewRootCA(t, "stranger")
	strangerCert := stranger.Issue(t, testenv.Issue{URIs: []string{harness.EnvoyID}}).TLS
	billingCert := m.PKI.CA.Issue(t, testenv.Issue{URIs: []string{"spiffe://mesh.test/billing"}}).TLS
	envoyCert := m.PKI.CA.Issue(t, testenv.Issue{URIs: []string{"spiffe://mesh.test/envoy/test-client"}}).TLS
	refused := []struct {
		name string
		cert *tls.Certificate
	}{{"no certificate", nil}, {"untrusted CA", &strangerCert}, {"id not allowed", &billingCert}}

	a := m.Addrs(0)
	for _, srv := range []struct{ name, addr string }{
		{"authz", a.Authz}, {"extproc", a.ExtProc}, {"ratelimit", a.RateLimit}, {"xds", a.XDS},
	} {
		t.Run("grpc/"+srv.name, func(t *testing.T) {
			if err := healthCheck(srv.addr, m.PKI.ClientTLS(&envoyCert)); err != nil {
				t.Fatalf("an Envoy certificate: Check = %v; want admitted", err)
			}
			before := g.Metric("gatehouse_tls_refused_total", fmt.Sprintf(`server="%s"`, srv.name))
			for _, c := range refused {
				if err := healthCheck(srv.addr, m.PKI.ClientTLS(c.cert)); err == nil {
					t.Errorf("%s: Check admitted; want refused", c.name)
				}
			}
			if after := g.Metric("gatehouse_tls_refused_total", fmt.Sprintf(`server="%s"`, srv.name)); after-max(before, 0) != 3 {
				t.Errorf("gatehouse_tls_refused_total{server=%q} went %v → %v; want +3", srv.name, before, after)
			}
		})
	}

	t.Run("admin", func(t *testing.T) {
		// Probes and metrics stay on the plain admin port; the sensitive
		// pages are not there.
		for path, want := range map[string]int{"/readyz": 200, "/metrics": 200, "/config": 404, "/xds/resources": 404} {
			resp, err := http.Get("http://" + a.Admin + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET http://admin%s = %d; want %d", path, resp.StatusCode, want)
			}
		}
		get := func(cert *tls.Certificate) (int, error) {
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: m.PKI.ClientTLS(cert)}}
			resp, err := c.Get("https://" + a.AdminSensitive + "/config")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		for _, c := range append(refused, struct {
			name string
			cert *tls.Certificate
		}{"an Envoy's certificate", &envoyCert}) {
			if code, err := get(c.cert); err == nil {
				t.Errorf("%s: GET /config = %d; want the handshake refused", c.name, code)
			}
		}
		var cfg map[string]any
		if err := g.Get("/config?format=json", &cfg); err != nil {
			t.Errorf("the admin client: GET /config = %v; want 200", err)
		}
	})
}

func healthCheck(addr string, cfg *tls.Config) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}
