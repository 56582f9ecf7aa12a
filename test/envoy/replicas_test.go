package envoy_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

const replicasConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "{{.Admin}}"}
  shutdownTimeout: 3s
redis: {addresses: ["{{.Redis}}"]}
audit: {stdout: true}
authz:
  address: "{{.Authz}}"
  jwt:
    issuers:
      - {name: demo, issuer: "https://demo.gatehouse.invalid", audiences: [gatehouse-demo], algorithms: [RS256], tierClaim: plan, tiers: [free, pro], jwks: '{{.DemoJWKS}}'}
ratelimit:
  address: "{{.RateLimit}}"
  tiers: {free: [{requests: 10, per: minute}]}
xds:
  address: "{{.XDS}}"
  services:
    authz: "{{with .Replica 0}}{{.Authz}}{{end}}"
    ratelimit: ["{{with .Replica 0}}{{.RateLimit}}{{end}}", "{{with .Replica 1}}{{.RateLimit}}{{end}}"]
listeners: [{name: public, address: "{{.Listener}}"}]
clusters: [{name: echo, endpoints: [{address: "{{.Upstream "echo"}}"}]}]
routes:
  - id: quota
    match: {prefix: /}
    cluster: echo
    authz: {jwt: {issuers: [demo]}}
`

// TestRateLimitReplicasShareCount: two gatehouse rate limit services behind
// one Envoy (two endpoints of its RLS cluster, xds.services.ratelimit as a
// list) share the count in Redis: exactly the quota passes, and both
// replicas answered.
func TestRateLimitReplicasShareCount(t *testing.T) {
	m := harness.Start(t, harness.Options{
		Config:     replicasConfig,
		Replicas:   2,
		Components: []string{"xds,authz,ratelimit", "ratelimit"},
		Redis:      true,
		Upstreams:  []string{"echo"},
	})
	if n := m.Envoy.Stat("cluster.gatehouse.ratelimit.membership_total"); n != 2 {
		t.Fatalf("Envoy's RLS cluster has %d members; want 2", n)
	}
	tok := harness.DemoToken(t, fmt.Sprint("shared-", time.Now().UnixNano()), "free", "", nil)
	codes := map[int]int{}
	for i := 0; i < 16; i++ {
		// A new connection each time: Envoy balances per request anyway.
		r := harness.Send(t, harness.HTTP2(), harness.Request{URL: m.URL() + "/x", Headers: []string{"authorization: Bearer " + tok}})
		codes[r.Status]++
	}
	if codes[http.StatusOK] != 10 || codes[http.StatusTooManyRequests] != 6 {
		t.Errorf("16 requests against a shared quota of 10: %v; want 10 OK and 6 refused", codes)
	}
	for i, g := range m.Gatehouse {
		if n := g.Metric("gatehouse_grpc_server_handled_total", `component="ratelimit"`); n < 1 {
			t.Errorf("replica %d answered %v rate limit calls; want some (Envoy balances over both)", i, n)
		}
	}
}
