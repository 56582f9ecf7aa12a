package envoy_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/test/harness"
)

// spiffeBundle is a trust domain's SPIFFE bundle document holding ca.
func spiffeBundle(t testing.TB, td string, ca *testenv.CA) string {
	t.Helper()
	doc, err := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{ca.Cert}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// mtlsPKI is every certificate of TestMTLS: four CAs (prod, partner, the
// partner's next CA, and a legacy CA that ends within the hour), the
// clients they issued, and the files testdata/mtls.yaml names.
type mtlsPKI struct {
	prod, partner, partner2        *testenv.CA
	web, app, impostor, app2, corp tls.Certificate
	files                          map[string]string
}

func newMTLSPKI(t testing.TB) *mtlsPKI {
	t.Helper()
	now := time.Now()
	p := &mtlsPKI{
		prod:     testenv.NewCA(t, "prod CA", now.Add(-time.Hour), now.Add(365*24*time.Hour)),
		partner:  testenv.NewCA(t, "partner CA", now.Add(-time.Hour), now.Add(365*24*time.Hour)),
		partner2: testenv.NewCA(t, "partner CA 2", now.Add(-time.Hour), now.Add(2*365*24*time.Hour)),
	}
	legacy := testenv.NewCA(t, "legacy CA", now.Add(-365*24*time.Hour), now.Add(time.Hour))
	server := p.prod.Issue(t, testenv.Issue{URIs: []string{"spiffe://prod.example/gateway"}, Server: true})
	edge := p.prod.Issue(t, testenv.Issue{URIs: []string{"spiffe://prod.example/edge"}})
	client := func(ca *testenv.CA, id string) tls.Certificate {
		return ca.Issue(t, testenv.Issue{URIs: []string{id}}).TLS
	}
	p.web = client(p.prod, "spiffe://prod.example/ns/web/sa/web")
	p.app = client(p.partner, "spiffe://partner.example/app")
	// The partner's CA signs an id of prod's trust domain; Envoy's
	// listener trusts both CAs and lets it through.
	p.impostor = client(p.partner, "spiffe://prod.example/ns/web/sa/admin")
	p.app2 = client(p.partner2, "spiffe://partner.example/app")
	// A certificate without SPIFFE id, of a PKI that predates SPIFFE.
	p.corp = p.prod.Issue(t, testenv.Issue{CN: "billing-batch"}).TLS
	p.files = map[string]string{
		"prod-bundle.pem":     p.prod.PEM,
		"partner-bundle.json": spiffeBundle(t, "partner.example", p.partner),
		"legacy-bundle.pem":   legacy.PEM,
		"clients-ca.pem":      p.prod.PEM + p.partner.PEM + p.partner2.PEM + legacy.PEM,
		"prod-ca.pem":         p.prod.PEM,
		"server.pem":          server.PEM,
		"server.key":          server.KeyPEM,
		"edge.pem":            edge.PEM,
		"edge.key":            edge.KeyPEM,
	}
	return p
}

// client speaks HTTPS (HTTP/2 when Envoy offers it) with a client
// certificate, trusting the prod CA that issued Envoy's.
func (p *mtlsPKI) client(cert tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(p.prod.Cert)
	tr := &http.Transport{DisableCompression: true, ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

func mtlsOptions(t *testing.T, p *mtlsPKI) harness.Options {
	return harness.Options{Config: readTestdata(t, "mtls.yaml"), Upstreams: []string{"echo"}, Files: p.files}
}

// TestMTLS: one TLS listener that asks every client for a certificate,
// and routes that trust them differently — proved through a real Envoy
// forwarding the peer certificate (include_peer_certificate) and, through
// a hand-written Envoy in front, x-forwarded-client-cert; the bundles are
// reloaded when their files change and reported as they near expiry.
func TestMTLS(t *testing.T) {
	p := newMTLSPKI(t)
	m := harness.Start(t, mtlsOptions(t, p))
	t.Run("routes", func(t *testing.T) { testMTLSRoutes(t, m, p) })
	t.Run("readyz", func(t *testing.T) { testMTLSReadyz(t, m) })
	t.Run("xfcc", func(t *testing.T) { testMTLSXFCC(t, m, p) })
	t.Run("bundle-reload", func(t *testing.T) { testMTLSBundleReload(t, m, p) })
}

// sendMTLS sends a GET with a client certificate through Envoy and returns
// the answer and, when the upstream answered, the SPIFFE id it was told.
func sendMTLS(t *testing.T, c *http.Client, u string, headers ...string) (*harness.Response, string) {
	t.Helper()
	r := harness.Send(t, c, harness.Request{URL: u, Headers: headers})
	if e, ok := r.Echo(); ok {
		return r, e.Header("x-gatehouse-spiffe-id")
	}
	return r, ""
}

// testMTLSRoutes: the same clients on three routes of one listener. prod's
// client passes everywhere; the partner's only where its trust domain is
// accepted; the impostor (prod's id, the partner's CA) only where nothing
// is verified — which is what a server-wide lax setting would have
// allowed on every route.
func testMTLSRoutes(t *testing.T, m *harness.Mesh, p *mtlsPKI) {
	base := "https://" + m.Addrs(0).Listener
	web, app, impostor := p.client(p.web), p.client(p.app), p.client(p.impostor)
	for _, tt := range []struct {
		name   string
		c      *http.Client
		route  string
		status int
		id     string
	}{
		{"prod client, strict", web, "strict", 200, "spiffe://prod.example/ns/web/sa/web"},
		{"prod client, partners", web, "partners", 200, "spiffe://prod.example/ns/web/sa/web"},
		{"partner client, strict", app, "strict", 403, ""},
		{"partner client, partners", app, "partners", 200, "spiffe://partner.example/app"},
		{"impostor, strict", impostor, "strict", 403, ""},
		{"impostor, partners", impostor, "partners", 403, ""},
		{"impostor, lax", impostor, "lax", 200, "spiffe://prod.example/ns/web/sa/admin"},
	} {
		r, id := sendMTLS(t, tt.c, base+"/"+tt.route)
		if r.Status != tt.status || id != tt.id {
			t.Errorf("%s: %d %s, upstream told SPIFFE id %q; want %d, %q", tt.name, r.Status, r.Body, id, tt.status, tt.id)
		}
		if r.Status == http.StatusForbidden && !strings.Contains(string(r.Body), "invalid_client_certificate") {
			t.Errorf("%s: body %s; want the public reason invalid_client_certificate", tt.name, r.Body)
		}
		if r.Proto != "HTTP/2.0" {
			t.Errorf("%s: spoke %s; want HTTP/2 over TLS", tt.name, r.Proto)
		}
	}
	// Without a SPIFFE id: the route that verifies nothing takes Envoy's
	// principal (the subject) as the caller; the one that verifies cannot.
	corp := p.client(p.corp)
	r := harness.Send(t, corp, harness.Request{URL: base + "/lax"})
	if e, ok := r.Echo(); r.Status != 200 || !ok || e.Header("x-gatehouse-subject") != "CN=billing-batch" || e.Header("x-gatehouse-spiffe-id") != "" {
		t.Errorf("certificate without SPIFFE id, lax: %d %s; want 200, subject CN=billing-batch and no SPIFFE id", r.Status, r.Body)
	}
	if r := harness.Send(t, corp, harness.Request{URL: base + "/strict"}); r.Status != http.StatusForbidden {
		t.Errorf("certificate without SPIFFE id, strict: %d; want 403", r.Status)
	}
	g := m.Gatehouse[0]
	if n := g.Metric("gatehouse_authz_decisions_total", `route="strict"`, `decision="deny"`, `reason="mtls_untrusted"`); n != 3 {
		t.Errorf("strict's mtls_untrusted denials = %v; want 3", n)
	}
	if n := g.Metric("gatehouse_authz_decisions_total", `route="partners"`, `decision="deny"`, `reason="mtls_untrusted"`); n != 1 {
		t.Errorf("partners' mtls_untrusted denials = %v; want 1", n)
	}
}

// testMTLSReadyz: the legacy trust domain's CA ends within the hour:
// /readyz says so and stays 200, and the metric shows it expiring.
func testMTLSReadyz(t *testing.T, m *harness.Mesh) {
	g := m.Gatehouse[0]
	var rep struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	if err := g.Get("/readyz", &rep); err != nil {
		t.Fatalf("GET /readyz: %v; want 200 with a warning", err)
	}
	a := rep.Checks["authz"]
	if !rep.Ready || !strings.HasPrefix(a, "warning: ") || !strings.Contains(a, "legacy.example: bundle") || !strings.Contains(a, "expiring") {
		t.Errorf("GET /readyz = %+v; want ready, authz warning that legacy.example's bundle is expiring", rep)
	}
	for _, td := range []string{"prod.example", "partner.example"} {
		if strings.Contains(a, td) {
			t.Errorf("GET /readyz names the healthy %s: %q", td, a)
		}
	}
	if v := g.Metric("gatehouse_authz_mtls_bundle_state", `trust_domain="legacy.example"`, `state="expiring"`); v != 1 {
		t.Errorf("gatehouse_authz_mtls_bundle_state{legacy.example,expiring} = %v; want 1", v)
	}
	if v := g.Metric("gatehouse_authz_mtls_bundle_state", `trust_domain="prod.example"`, `state="ok"`); v != 1 {
		t.Errorf("gatehouse_authz_mtls_bundle_state{prod.example,ok} = %v; want 1", v)
	}
}

// testMTLSXFCC: through a hand-written edge proxy that writes XFCC, the
// route that trusts the edge proxy sees the client behind it (its
// certificate verified), the route that trusts no XFCC sees the proxy;
// a client that reaches inner directly cannot claim another identity in
// the header.
func testMTLSXFCC(t *testing.T, m *harness.Mesh, p *mtlsPKI) {
	port := func(addr string) string {
		_, pt, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		return pt
	}
	admin, edge, inner := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	file := func(name string) string {
		f, err := m.Addrs(0).File(name)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	tmpl := template.Must(template.New("front").Option("missingkey=error").Parse(readTestdata(t, "mtls-front-envoy.yaml")))
	var bs bytes.Buffer
	if err := tmpl.Execute(&bs, map[string]any{
		"AdminPort": port(admin), "EdgePort": port(edge), "InnerPort": port(inner),
		"EchoPort": port(m.Upstreams["echo"].Addr), "AuthzPort": port(m.Addrs(0).Authz),
		"ServerCert": file("server.pem"), "ServerKey": file("server.key"), "ClientsCA": file("clients-ca.pem"),
		"ProdCA": file("prod-ca.pem"), "EdgeCert": file("edge.pem"), "EdgeKey": file("edge.key"),
		"Routes": []string{"xfcc-trusted", "xfcc-off"},
	}); err != nil {
		t.Fatal(err)
	}
	front := harness.StartStaticEnvoy(t, bs.String(), admin)
	waitListening(t, edge, front)
	waitListening(t, inner, front)

	g := m.Gatehouse[0]
	web, impostor := p.client(p.web), p.client(p.impostor)
	up := m.Upstreams["echo"]

	r, id := sendMTLS(t, web, "https://"+edge+"/xfcc-trusted")
	if r.Status != 200 || id != "spiffe://prod.example/ns/web/sa/web" {
		t.Fatalf("web through the edge, xfcc-trusted: %d %s, SPIFFE id %q; want 200 and the client's id", r.Status, r.Body, id)
	}
	// What Envoy wrote, as the upstream got it: the client's element (with
	// its certificate and chain), then the edge proxy's.
	xfcc := up.Last().Header("x-forwarded-client-cert")
	if els := strings.Split(xfcc, ",By="); len(els) != 2 || !strings.Contains(els[0], `Cert="`) || !strings.Contains(els[0], `Chain="`) ||
		!strings.HasSuffix(els[1], "URI=spiffe://prod.example/edge") {
		t.Errorf("XFCC at the upstream = %q; want the client's element with Cert and Chain, then the edge proxy's", xfcc)
	}

	if r, id := sendMTLS(t, web, "https://"+edge+"/xfcc-off"); r.Status != 200 || id != "spiffe://prod.example/edge" {
		t.Errorf("web through the edge, xfcc-off: %d %s, SPIFFE id %q; want 200 and the edge proxy's id", r.Status, r.Body, id)
	}
	if r, id := sendMTLS(t, impostor, "https://"+edge+"/xfcc-trusted"); r.Status != http.StatusForbidden {
		t.Errorf("impostor through the edge, xfcc-trusted: %d, SPIFFE id %q; want 403 (its certificate, in XFCC, does not verify against prod's bundle)", r.Status, id)
	}

	before := g.Metric("gatehouse_authz_xfcc_untrusted_total")
	forged := `Cert="` + url.PathEscape(p.files["edge.pem"]) + `";URI=spiffe://prod.example/edge,By=spiffe://prod.example/gateway;URI=spiffe://prod.example/ns/admin/sa/root`
	if r, id := sendMTLS(t, web, "https://"+inner+"/xfcc-trusted", "x-forwarded-client-cert: "+forged); r.Status != 200 || id != "spiffe://prod.example/ns/web/sa/web" {
		t.Errorf("web straight to inner with a forged XFCC: %d %s, SPIFFE id %q; want 200 as itself", r.Status, r.Body, id)
	}
	if after := g.Metric("gatehouse_authz_xfcc_untrusted_total"); after != before+1 {
		t.Errorf("gatehouse_authz_xfcc_untrusted_total went from %v to %v; want one more", before, after)
	}
}

// waitListening waits until a listener of a static Envoy accepts.
func waitListening(t *testing.T, addr string, e *harness.Envoy) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the hand-written Envoy does not listen on %s:\n%s", addr, e.LogTail(30))
}

// testMTLSBundleReload: a bundle file that changes is read again without
// a signal: the partner's next CA is trusted and its old one no longer;
// a broken bundle file is refused and the last good bundle keeps serving.
func testMTLSBundleReload(t *testing.T, m *harness.Mesh, p *mtlsPKI) {
	g := m.Gatehouse[0]
	base := "https://" + m.Addrs(0).Listener + "/partners"
	app, app2 := p.client(p.app), p.client(p.app2)
	if r, _ := sendMTLS(t, app2, base); r.Status != http.StatusForbidden {
		t.Fatalf("the next CA's client before the rotation: %d; want 403", r.Status)
	}
	bundle, err := m.Addrs(0).File("partner-bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	from := len(g.Logs())
	replaceFile(t, bundle, spiffeBundle(t, "partner.example", p.partner2))
	line := g.WaitLog(from, "the reload the bundle file triggers", func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return msg == "config reloaded" || strings.HasPrefix(msg, "config reload rejected")
	})
	if line["msg"] != "config reloaded" || line["trigger"] != "file change" {
		t.Fatalf("after the bundle file changed: %v; want config reloaded on a file change", line)
	}
	if r, id := sendMTLS(t, app2, base); r.Status != 200 || id != "spiffe://partner.example/app" {
		t.Errorf("the next CA's client after the rotation: %d %s; want 200", r.Status, r.Body)
	}
	if r, _ := sendMTLS(t, app, base); r.Status != http.StatusForbidden {
		t.Errorf("the old CA's client after the rotation: %d; want 403", r.Status)
	}
	if v := g.Metric("gatehouse_authz_mtls_bundle_expiry_timestamp_seconds", `trust_domain="partner.example"`); v != float64(p.partner2.Cert.NotAfter.Unix()) {
		t.Errorf("partner.example's bundle expiry = %v; want the next CA's, %d", v, p.partner2.Cert.NotAfter.Unix())
	}

	from = len(g.Logs())
	replaceFile(t, bundle, `{"keys": [{"kty": "EC", "use": "x509-svid"`)
	line = g.WaitLog(from, "the reload the broken bundle triggers", func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return msg == "config reloaded" || strings.HasPrefix(msg, "config reload rejected")
	})
	if msg, _ := line["msg"].(string); !strings.HasPrefix(msg, "config reload rejected") || !strings.Contains(line["errors"].(string), "trustDomains[1].bundleFile") {
		t.Errorf("after a broken bundle: %v; want the reload rejected, naming trustDomains[1].bundleFile", line)
	}
	if r, _ := sendMTLS(t, app2, base); r.Status != 200 {
		t.Errorf("after a broken bundle was refused: %d; want the last good bundle serving (200)", r.Status)
	}
}

// replaceFile writes a file as Kubernetes and SPIRE's helpers do: a new
// file renamed over the old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
