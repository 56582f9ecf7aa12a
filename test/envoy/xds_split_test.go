package envoy_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/test/harness"
)

// xdsSplitRoutes routes two hosts to two clusters, with the listener's
// routes split by host (xds.routeSplit: host): Envoy gets one route
// configuration per host, selected by scoped routes.
const xdsSplitRoutes = `
clusters:
  - name: a
    endpoints: [{address: "{{.Upstream "a"}}"}]
  - name: b
    endpoints: [{address: "{{.Upstream "b"}}"}]
routes:
  - id: ha
    match: {hosts: [a.test], prefix: /}
    cluster: a
    authz: {public: true}
  - id: hb
    match: {hosts: [b.test, b2.test], prefix: /}
    cluster: B_CLUSTER
    authz: {public: true}
`

func splitConfig(bCluster string) string {
	c := strings.Replace(xdsConfig, "xds: {address: \"{{.XDS}}\"}", "xds: {address: \"{{.XDS}}\", routeSplit: host}", 1)
	return strings.Replace(c, "CLUSTERS_AND_ROUTES", strings.Replace(xdsSplitRoutes, "B_CLUSTER", bCluster, 1), 1)
}

func upstreamFor(t *testing.T, m *harness.Mesh, host string) (int, string) {
	t.Helper()
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/x", Host: host})
	e, _ := r.Echo()
	return r.Status, e.Upstream
}

// TestXDSRouteSplit: real Envoy accepts routes split by host (scoped
// routes over ADS, one RDS unit per host) on SotW and Delta, routes each
// host (with or without a port) by its own unit, answers 404 for a host
// no unit serves, and takes a change of one host's routes.
func TestXDSRouteSplit(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			m := harness.Start(t, harness.Options{Config: splitConfig("a"), Upstreams: []string{"a", "b"}, Delta: delta})
			for host, want := range map[string]string{"a.test": "a", "b.test": "a", "b2.test:8080": "a"} {
				if st, got := upstreamFor(t, m, host); st != http.StatusOK || got != want {
					t.Errorf("Host %s: %d from %q; want 200 from %q\n%s", host, st, got, want, m.Envoy.LogTail(30))
				}
			}
			if st, _ := upstreamFor(t, m, "c.test"); st != http.StatusNotFound {
				t.Errorf("Host c.test (no unit): %d; want 404", st)
			}
			node, err := m.Gatehouse[0].Node("envoy-e2e-1")
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := node.Types["routes"]; !ok || r.Resources != 2 {
				t.Errorf("/xds/nodes routes = %+v; want 2 route configurations sent", r)
			}

			m.Reload(splitConfig("b"))
			m.WaitSynced(1)
			for host, want := range map[string]string{"a.test": "a", "b.test": "b", "b2.test": "b"} {
				if st, got := upstreamFor(t, m, host); st != http.StatusOK || got != want {
					t.Errorf("after the edit, Host %s: %d from %q; want 200 from %q", host, st, got, want)
				}
			}
			node, err = m.Gatehouse[0].Node("envoy-e2e-1")
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{"clusters", "endpoints", "listeners", "routes"} {
				if st, ok := node.Types[typ]; !ok || !st.InSync || st.NACK != nil {
					t.Errorf("/xds/nodes %s = %+v; want in sync, no NACK", typ, st)
				}
			}
			if delta {
				// Delta sends the changed unit alone.
				if r := node.Types["routes"]; r.Resources != 1 {
					t.Errorf("routes resources in the last delta response = %d; want 1 (the changed host's unit)", r.Resources)
				}
			}
			for _, s := range []string{"http.public.rds.routes/public/a.test.update_rejected", "http.public.rds.routes/public/b.test.update_rejected"} {
				if n := m.Envoy.Stat(s); n != 0 {
					t.Errorf("%s = %d; want 0", s, n)
				}
			}
			testEnvoyNoWarnings(t, m)
		})
	}
}
