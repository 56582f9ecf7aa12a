package translate_test

import (
	"testing"

	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/xds/translate"
)

const domainsYAML = `apiVersion: gatehouse/v1
xds: {}
ratelimit:
  default: [{requests: 10, per: second}]
listeners:
  - name: edge
    address: 0.0.0.0:8080
clusters:
  - name: app
    endpoints: [{address: 127.0.0.1:9000}]
routes:
  - id: limited
    match: {prefix: /a}
    cluster: app
  - id: also
    match: {prefix: /b}
    cluster: app
  - id: free
    match: {prefix: /c}
    cluster: app
    ratelimit: {disabled: true}
`

// TestRateLimitDomains reads the domains Envoy will send descriptors in
// from the rendered resources: the filter's domain for the routes with
// rate limit actions, a per-route domain where one is set.
func TestRateLimitDomains(t *testing.T) {
	res, err := translate.Translate(loadString(t, domainsYAML))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.RateLimitDomains(), map[string][]string{"gatehouse": {"also", "limited"}}; !cmp.Equal(got, want) {
		t.Errorf("RateLimitDomains() = %v; want %v", got, want)
	}
	// A hand-edited per-route domain (RateLimitPerRoute) moves a route.
	rt := res.Routes[0].VirtualHosts[0].Routes[0]
	per, err := anypb.New(&ratelimitfilterv3.RateLimitPerRoute{Domain: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if rt.TypedPerFilterConfig == nil {
		rt.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	rt.TypedPerFilterConfig["envoy.filters.http.ratelimit"] = per
	got := res.RateLimitDomains()
	if len(got["other"]) != 1 || got["other"][0] != rt.Name {
		t.Errorf("RateLimitDomains() with a per-route domain = %v; want %s under other", got, rt.Name)
	}
}
