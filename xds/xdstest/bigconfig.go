// Package xdstest holds helpers for tests, benchmarks and load scenarios
// of the xds component. It writes large gatehouse configs for benchmarks and the
// load scenario: many routes over many hosts and clusters, every
// component enabled so that each route carries its per-filter config.
package xdstest

import (
	"fmt"
	"strings"
)

// YAML returns a config of routes routes and clusters clusters on one
// HTTP listener, the routes spread over hosts hosts. Route i is named
// "r<i>"; variant changes route 0's prefix, for a one-route change.
func YAML(routes, clusters, hosts int, xdsAddr string, variant int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  log: {level: warn}
authz: {address: "127.0.0.1:0"}
extproc: {address: "127.0.0.1:0"}
ratelimit: {address: "127.0.0.1:0"}
xds:
  address: %q
  services: {authz: "127.0.0.1:9191", extproc: "127.0.0.1:9192", ratelimit: "127.0.0.1:9193"}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
`, xdsAddr)
	for i := range clusters {
		fmt.Fprintf(&b, "  - {name: c%d, endpoints: [{address: 10.%d.%d.1:8080}, {address: 10.%d.%d.2:8080}], outlierDetection: {failurePercentage: {}}}\n",
			i, i/250, i%250, i/250, i%250)
	}
	b.WriteString("routes:\n")
	for i := range routes {
		prefix := fmt.Sprintf("/svc%d/", i)
		if i == 0 && variant > 0 {
			prefix = fmt.Sprintf("/svc0-v%d/", variant)
		}
		fmt.Fprintf(&b, "  - {id: r%d, match: {hosts: [h%d.example.com], prefix: %q, methods: [GET, POST]}, cluster: c%d, timeout: 5s, retry: {numRetries: 2}}\n",
			i, i%hosts, prefix, i%clusters)
	}
	return b.String()
}

// WithClusterVariant changes cluster c0's second endpoint, for a change
// of one cluster's endpoints.
func WithClusterVariant(y string, variant int) string {
	return strings.Replace(y, "{address: 10.0.0.2:8080}", fmt.Sprintf("{address: 10.0.0.%d:8080}", 2+variant%200), 1)
}
