package envoy_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// testClusterOutlierDetection: of the pool's two endpoints, the one that
// fails every request is ejected by outlier detection (Envoy's own
// ejection counters), after which every request succeeds.
func testClusterOutlierDetection(t *testing.T, m *harness.Mesh) {
	c := harness.HTTP1()
	deadline := time.Now().Add(20 * time.Second)
	for m.Envoy.Stat("cluster.pool.outlier_detection.ejections_enforced_consecutive_5xx") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no ejection within 20s: %v", m.Envoy.Stats(`^cluster\.pool\.outlier_detection\.`))
		}
		harness.Send(t, c, harness.Request{URL: m.URL() + "/pool"})
	}
	if n := m.Envoy.Stat("cluster.pool.outlier_detection.ejections_active"); n != 1 {
		t.Errorf("cluster.pool.outlier_detection.ejections_active = %d; want 1", n)
	}
	good := m.Upstreams["pool-good"]
	for i := 0; i < 20; i++ {
		r := harness.Send(t, c, harness.Request{URL: m.URL() + "/pool"})
		if e, _ := r.Echo(); r.Status != http.StatusOK || e.Upstream != good.Name {
			t.Fatalf("request %d after the ejection: %d from %q; want 200 from %s", i, r.Status, e.Upstream, good.Name)
		}
	}
}

// testClusterRetries: a route retrying 503 twice makes three attempts and
// Envoy counts two retries.
func testClusterRetries(t *testing.T, m *harness.Mesh) {
	up := m.Upstreams["echo"]
	before := m.Envoy.Stat("cluster.echo.upstream_rq_retry")
	up.Reset()
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/retry/x", Headers: []string{"x-echo-status: 503"}})
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("status %d; want the upstream's 503 after the retries", r.Status)
	}
	n := 0
	for _, e := range up.Seen() {
		if e.Path == "/retry/x" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("the upstream saw %d attempts; want 3 (1 + numRetries 2)", n)
	}
	if d := m.Envoy.Stat("cluster.echo.upstream_rq_retry") - before; d != 2 {
		t.Errorf("Envoy counted %d retries; want 2", d)
	}
}

// testClusterTimeout: a route timeout of 300ms answers 504 for an upstream
// that takes a second.
func testClusterTimeout(t *testing.T, m *harness.Mesh) {
	before := m.Envoy.Stat("cluster.echo.upstream_rq_timeout")
	start := time.Now()
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/slow", Headers: []string{"x-echo-delay: 3s"}})
	if r.Status != http.StatusGatewayTimeout {
		t.Errorf("status %d; want 504", r.Status)
	}
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("the answer took %v; the route's 300ms timeout did not apply", el)
	}
	if d := m.Envoy.Stat("cluster.echo.upstream_rq_timeout") - before; d != 1 {
		t.Errorf("Envoy counted %d upstream timeouts; want 1", d)
	}
}

// testClusterCircuitBreaker: the narrow cluster's limits are Envoy's, and
// requests past them are refused by Envoy (overflow counted in its stats).
func testClusterCircuitBreaker(t *testing.T, m *harness.Mesh) {
	b, err := getText("http://" + m.Envoy.Admin + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"narrow::default_priority::max_connections::1", "narrow::default_priority::max_pending_requests::1", "narrow::default_priority::max_requests::1", "narrow::default_priority::max_retries::1"} {
		if !strings.Contains(b, want) {
			t.Errorf("Envoy's /clusters lacks %q", want)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := harness.TrySend(harness.HTTP1(), harness.Request{URL: m.URL() + "/narrow", Headers: []string{"x-echo-delay: 500ms"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			codes[r.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusServiceUnavailable] == 0 || codes[http.StatusOK] == 0 {
		t.Errorf("8 concurrent requests through a 1-request circuit breaker: %v; want some 200 and some 503", codes)
	}
	st := m.Envoy.Stats(`^cluster\.narrow\.upstream_rq_pending_overflow$`)
	if st["cluster.narrow.upstream_rq_pending_overflow"] == 0 {
		t.Errorf("Envoy's cluster.narrow.upstream_rq_pending_overflow = 0; want the refusals counted")
	}
}

func getText(url string) (string, error) {
	r, err := harness.TrySend(harness.HTTP1(), harness.Request{URL: url})
	if err != nil {
		return "", err
	}
	return string(r.Body), nil
}
