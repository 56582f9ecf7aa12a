// Package envoy_test proves gatehouse's promises through a real Envoy 1.40:
// Envoy gets its config from `gatehouse serve` over ADS and calls its
// ext_authz, ext_proc and rate limit services; the tests send real HTTP/1.1
// and HTTP/2 requests through Envoy's listener and look at what the client
// and the upstream see, with Envoy's /stats and /config_dump as a second
// witness.
package envoy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gatehouse/gatehouse/test/harness"
)

// Secrets of the webhook senders in testdata/mesh.yaml.
const (
	githubSecret = "e2e-github-secret-0123456789"
	stripeSecret = "whsec_e2e_stripe_secret_0123456789"
)

func meshConfig(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func meshOptions(t testing.TB) harness.Options {
	return harness.Options{
		Config:    meshConfig(t),
		Redis:     true,
		Upstreams: []string{"echo", "pool-good", "broken"},
		Files:     map[string]string{"github.secret": githubSecret, "stripe.secret": stripeSecret},
	}
}

// TestMesh runs the tests that share one mesh (they change nothing that
// the others see: each uses its own route, subject or key).
func TestMesh(t *testing.T) {
	m := harness.Start(t, meshOptions(t))
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *harness.Mesh)
	}{
		{"xds/acked", testXDSAcked},
		{"authz/identity", testAuthzIdentity},
		{"authz/denials", testAuthzDenials},
		{"authz/apikey", testAuthzAPIKey},
		{"authz/spoofed-identity", testAuthzSpoofedIdentity},
		{"authz/webhooks", testAuthzWebhooks},
		{"authz/path-tricks", testAuthzPathTricks},
		{"ratelimit/quota", testRateLimitQuota},
		{"extproc/openapi", testExtProcOpenAPI},
		{"extproc/redaction", testExtProcRedaction},
		{"extproc/idempotency", testExtProcIdempotency},
		{"extproc/hygiene", testExtProcHygiene},
		{"extproc/mode-override", testExtProcModeOverride},
		{"extproc/stages", testExtProcStages},
		{"cluster/retries", testClusterRetries},
		{"cluster/timeout", testClusterTimeout},
		{"cluster/circuit-breaker", testClusterCircuitBreaker},
		{"cluster/outlier-detection", testClusterOutlierDetection},
		{"envoy/no-warnings", testEnvoyNoWarnings},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, m) })
	}
}
