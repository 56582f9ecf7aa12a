package envoy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	envoyboot "github.com/gatehouse/gatehouse/envoy"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/test/harness"
)

// envoyValidate renders config (a file) as a static bootstrap with
// `gatehouse render --bootstrap` and has Envoy judge it with --mode
// validate. It returns false, without failing, when gatehouse itself
// refuses the config (exit 1: a fixture of a wrong config).
func envoyValidate(t *testing.T, config string) bool {
	t.Helper()
	bin, envoy := harness.Binary(t), testenv.Envoy(t)
	var out, errOut bytes.Buffer
	cmd := exec.Command(bin, "render", "--bootstrap", config)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 && strings.Contains(out.String(), "error") {
			return false
		}
		t.Fatalf("gatehouse render --bootstrap %s: %v\n%s%s", config, err, out.String(), errOut.String())
	}
	bs := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(bs, envoySDSFiles(t, envoyHostFiles(t, out.Bytes())), 0o600); err != nil {
		t.Fatal(err)
	}
	// A node, as every Envoy has one: SDS secrets (xds.services.tls)
	// refuse to start without.
	v, err := exec.Command(envoy, "--mode", "validate", "-c", bs, "--disable-hot-restart", "--log-level", "error",
		"--service-node", "validate", "--service-cluster", "validate").CombinedOutput()
	if err != nil {
		t.Errorf("envoy --mode validate refuses what gatehouse renders of %s (gatehouse validate accepted it):\n%s", config, lastLines(string(v), 15))
	}
	return true
}

var filenameRe = regexp.MustCompile(`(?m)^(\s*filename: )(\S+)$`)

// envoyHostFiles points the files a bootstrap names that do not exist here
// (they live on the Envoy host: /etc/envoy/tls.crt) at certificates made
// for the test, so that Envoy checks the TLS contexts too, not only the
// paths: a name ending in .key becomes the server key, one with "ca" in it
// the CA, any other the server certificate.
func envoyHostFiles(t *testing.T, bootstrap []byte) []byte {
	var certs map[string]string
	dir := ""
	return filenameRe.ReplaceAllFunc(bootstrap, func(m []byte) []byte {
		sub := filenameRe.FindSubmatch(m)
		path := strings.Trim(string(sub[2]), `'"`)
		if _, err := os.Stat(path); err == nil {
			return m
		}
		if certs == nil {
			certs, dir = testCerts(t), t.TempDir()
			for name, body := range certs {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		base := strings.ToLower(filepath.Base(path))
		name := "server.pem"
		switch {
		case strings.HasSuffix(base, ".key"):
			name = "server.key"
		case strings.Contains(base, "ca"):
			name = "ca.pem"
		}
		return append(sub[1], filepath.Join(dir, name)...)
	})
}

var sdsPathRe = regexp.MustCompile(`(?m)^(\s*path: )(/\S+)$`)

// envoySDSFiles points the SDS files a bootstrap names that do not exist
// here (xds.services.tls: envoy/sds-*.yaml on the Envoy host) at the
// repository's SDS files, filled in with certificates made for the test,
// and their watched directories at where those are.
func envoySDSFiles(t *testing.T, bootstrap []byte) []byte {
	dir := ""
	return sdsPathRe.ReplaceAllFunc(bootstrap, func(m []byte) []byte {
		sub := sdsPathRe.FindSubmatch(m)
		path := strings.Trim(string(sub[2]), `'"`)
		if _, err := os.Stat(path); err == nil {
			return m
		}
		if dir == "" {
			dir = t.TempDir()
			ca := testenv.NewRootCA(t, "sds")
			ca.Issue(t, testenv.Issue{URIs: []string{"spiffe://example.org/envoy"}}).Write(t, filepath.Join(dir, "tls"), ca)
			if err := envoyboot.WriteSDS(dir, filepath.Join(dir, "tls")); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case strings.Contains(path, "valid"):
			return append(sub[1], filepath.Join(dir, "sds-validation.yaml")...)
		case strings.HasSuffix(path, ".yaml"):
			return append(sub[1], filepath.Join(dir, "sds-certificate.yaml")...)
		}
		return append(sub[1], dir...)
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestEnvoyValidatesExamples: Envoy accepts everything gatehouse renders of
// every config under examples/.
func TestEnvoyValidatesExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Config directories (examples/petstore/): validated as a directory.
	dirs, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "examples", "*", "gatehouse.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		files = append(files, filepath.Dir(d))
	}
	n := 0
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && !st.IsDir() && !isGatehouseConfig(t, f) {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			if !envoyValidate(t, f) {
				t.Errorf("gatehouse refuses its own example %s", f)
			}
		})
	}
	if n < 3 {
		t.Errorf("validated %d examples; want every gatehouse config under examples/ (at least 3)", n)
	}
}

// TestEnvoyValidatesTestConfigs: every valid gatehouse config in a
// testdata directory of the repository (golden inputs, fixtures) renders
// to something Envoy accepts. Fixtures gatehouse itself refuses are left
// out.
func TestEnvoyValidatesTestConfigs(t *testing.T) {
	root := harness.RepoRoot()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == ".cache" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".yaml") && strings.Contains(filepath.ToSlash(p), "/testdata/") &&
			!strings.Contains(filepath.ToSlash(p), "/test/envoy/testdata/") && isGatehouseConfig(t, p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	validated := 0
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			if envoyValidate(t, f) {
				validated++
			}
		})
	}
	t.Logf("%d test configs validated by Envoy, %d refused by gatehouse itself", validated, len(files)-validated)
	if validated == 0 {
		t.Error("no test config validated")
	}
}

// TestEnvoyValidatesEndToEndConfigs: the configs of the end-to-end tests,
// and one with every feature switched on, render to what Envoy accepts.
func TestEnvoyValidatesEndToEndConfigs(t *testing.T) {
	certs := testCerts(t)
	cases := map[string]harness.Options{
		"mesh.yaml":         meshOptions(t),
		"servers-mtls.yaml": serversMTLSOptions(t),
		"failure.yaml": {Config: strings.Replace(readTestdata(t, "failure.yaml"), "AUTHZ_MODE", "open", 1), Replicas: 2,
			Redis: true, Upstreams: []string{"echo"}},
		"everything.yaml": {Config: readTestdata(t, "everything.yaml"), Redis: true, Upstreams: []string{"a", "b", "internal-listener"}, Files: certs},
		"xds":             {Config: strings.Replace(xdsConfig, "CLUSTERS_AND_ROUTES", xdsRoutesA, 1), Upstreams: []string{"a", "b"}},
		"replicas":        {Config: replicasConfig, Replicas: 2, Redis: true, Upstreams: []string{"echo"}},
		"budget":          {Config: budgetConfig, Replicas: 4, Redis: true, Upstreams: []string{"llm"}},
		"mtls.yaml":       mtlsOptions(t, newMTLSPKI(t)),
		"contract.yaml": {Config: readTestdata(t, "contract.yaml"), Redis: true, Upstreams: []string{"echo"},
			Files: map[string]string{"pets.yaml": readTestdata(t, "contract-pets.yaml")}},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := harness.RenderStatic(t, opts)[0]
			f := filepath.Join(t.TempDir(), "gatehouse.yaml")
			if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if !envoyValidate(t, f) {
				out, _ := exec.Command(harness.Binary(t), "validate", f).CombinedOutput()
				t.Fatalf("gatehouse refuses the test config:\n%s", out)
			}
		})
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func isGatehouseConfig(t *testing.T, path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte("apiVersion: gatehouse/v1"))
}

// testCerts makes a CA, a server certificate with a SPIFFE id it signs,
// and the secrets everything.yaml refers to.
func testCerts(t *testing.T) map[string]string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/ns/prod/sa/web"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"ca.pem":     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		"server.pem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"server.key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		"secret":     "e2e-webhook-secret-0123456789abcdef",
		"whsec":      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	}
}
