package envoy_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

const drainConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "{{.Admin}}"}
  drainDelay: 3s
  shutdownTimeout: 5s
audit: {stdout: true}
authz:
  address: "{{.Authz}}"
  apiKeys:
    header: x-api-key
    keys:
      - id: demo-partner-2026           # key: gh_demo_apikey_0123456789abcdef
        hash: sha256:582d3e95cac50fa804d679879fdc27ae65fb32759b5699b8513fb7c44552d527
        subject: demo-partner
        tier: pro
xds:
  address: "{{.XDS}}"
  services:
    authz: ["{{with .Replica 0}}{{.Authz}}{{end}}", "{{with .Replica 1}}{{.Authz}}{{end}}"]
    healthCheckInterval: 500ms
listeners: [{name: public, address: "{{.Listener}}"}]
clusters: [{name: echo, endpoints: [{address: "{{.Upstream "echo"}}"}]}]
routes:
  - id: api
    match: {prefix: /}
    cluster: echo
    authz: {apiKey: {}}
`

// TestDrainUnderLoad: SIGTERM to one of two ext_authz replicas while
// requests flow through Envoy (which denies when ext_authz cannot be
// reached). The replica turns NOT_SERVING but keeps serving for its drain
// delay; Envoy's health checks take it out of rotation; then it drains and
// exits 0. No request fails at any point.
func TestDrainUnderLoad(t *testing.T) {
	m := harness.Start(t, harness.Options{
		Config:     drainConfig,
		Replicas:   2,
		Components: []string{"xds,authz", "authz"},
		Upstreams:  []string{"echo"},
	})
	waitStat(t, m, "cluster.gatehouse.authz.membership_healthy", 2)

	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := harness.HTTP1()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := harness.TrySend(c, harness.Request{URL: m.URL() + "/x", Headers: []string{"x-api-key: gh_demo_apikey_0123456789abcdef"}})
				if err == nil && r.Status == http.StatusOK {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				if err != nil {
					firstFailure.CompareAndSwap(nil, err.Error())
				} else {
					firstFailure.CompareAndSwap(nil, http.StatusText(r.Status)+": "+string(r.Body))
				}
			}
		}()
	}
	// Both replicas answer before the drain.
	deadline := time.Now().Add(20 * time.Second)
	for m.Gatehouse[1].Metric("gatehouse_grpc_server_handled_total", `component="authz"`, `method="/envoy.service.auth.v3.Authorization/Check"`) < 10 {
		if time.Now().After(deadline) {
			t.Fatal("replica 1 answered no Check within 20s; Envoy does not balance over both")
		}
		time.Sleep(50 * time.Millisecond)
	}

	code := m.Gatehouse[1].Terminate()
	time.Sleep(time.Second) // the survivor alone, a little while
	close(stop)
	wg.Wait()

	if code != 0 {
		t.Errorf("the drained replica exited %d; want 0 (no RPC cut)", code)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the drain; first: %v", n, n+ok.Load(), firstFailure.Load())
	}
	if n := m.Envoy.Stat("cluster.gatehouse.authz.health_check.failure"); n < 1 {
		t.Errorf("Envoy saw no failed health check (%d); the replica was not taken out by NOT_SERVING", n)
	}
	drained := m.Gatehouse[1]
	var sawDelay bool
	for _, l := range drained.Logs() {
		sawDelay = sawDelay || l["msg"] == "draining: not ready, still serving for the drain delay"
	}
	if !sawDelay {
		t.Errorf("the replica did not log its drain delay:\n%s", drained.LogTail(20))
	}
	t.Logf("through Envoy during the drain: %d requests answered, %d failed", ok.Load(), failed.Load())
}

func waitStat(t *testing.T, m *harness.Mesh, stat string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for m.Envoy.Stat(stat) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d; want %d", stat, m.Envoy.Stat(stat), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
