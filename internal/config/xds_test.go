package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const xdsBase = `apiVersion: gatehouse/v1
xds: {}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
  - {name: orders, endpoints: [{address: 10.0.0.1:80}]}
`

func loadXDS(t *testing.T, extra string) (*Config, Errors) {
	t.Helper()
	cfg, err := LoadBytes("test.yaml", []byte(xdsBase+extra), LoadOptions{})
	if err != nil {
		var errs Errors
		if !errors.As(err, &errs) {
			t.Fatalf("LoadBytes: %v", err)
		}
		return nil, errs
	}
	return cfg, cfg.Warnings
}

func TestXDSValidation(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want are substrings of the rendered errors; an entry starting
		// with "warning:" must be a warning.
		want []string
	}{
		{name: "valid", yaml: "routes:\n  - {id: a, match: {prefix: /}, cluster: orders}\n"},
		{
			name: "dangling cluster",
			yaml: "routes:\n  - {id: a, match: {prefix: /}, cluster: order}\n",
			want: []string{`test.yaml:8: routes[0].cluster: no cluster is named "order" (did you mean "orders"?)`},
		},
		{
			name: "duplicate cluster and listener",
			yaml: "  - {name: orders, endpoints: [{address: 10.0.0.2:80}]}\n",
			want: []string{`clusters[1].name: duplicate cluster name "orders" (also clusters[0])`},
		},
		{
			name: "impossible weights",
			yaml: "routes:\n  - id: a\n    weightedClusters: [{name: orders, weight: 0}]\n",
			want: []string{"routes[0].weightedClusters: the weights add up to 0"},
		},
		{
			name: "weighted cluster listed twice and missing",
			yaml: "routes:\n  - id: a\n    weightedClusters: [{name: orders, weight: 1}, {name: orders, weight: 1}, {name: nope, weight: 1}]\n",
			want: []string{`weightedClusters[1].name: cluster "orders" is listed twice`, `weightedClusters[2].name: no cluster is named "nope"`},
		},
		{
			name: "two actions",
			yaml: "routes:\n  - {id: a, cluster: orders, directResponse: {status: 200}}\n",
			want: []string{"routes[0]: set only one of cluster, weightedClusters, redirect and directResponse"},
		},
		{
			name: "served route without action",
			yaml: "routes:\n  - {id: a, match: {prefix: /}}\n",
			want: []string{`route "a" is served by a listener but has no action`},
		},
		{
			name: "invalid regex",
			yaml: "routes:\n  - {id: a, match: {regex: \"/a(\"}, cluster: orders}\n",
			want: []string{`routes[0].match.regex: "/a(" is not a valid RE2 expression`},
		},
		{
			name: "regex too large for envoy",
			yaml: "routes:\n  - {id: a, match: {regex: \"/(ab|cd|ef|gh){20}\"}, cluster: orders}\n",
			want: []string{`test.yaml:8: routes[0].match.regex: "/(ab|cd|ef|gh){20}" compiles to about`, "Envoy refuses regexes over 100"},
		},
		{
			// Go's program is 103 instructions here, RE2's 135 (Envoy
			// refused it while gatehouse let it through with a warning).
			name: "regex whose classes make it too large for envoy",
			yaml: "routes:\n  - {id: a, match: {regex: \"/api/v[0-9]+/(users|orders)/[0-9a-f-]{36}\"}, cluster: orders}\n",
			want: []string{"routes[0].match.regex", "compiles to about 13", "Envoy refuses regexes over 100"},
		},
		{
			name: "regexes of headers and query parameters",
			yaml: "routes:\n  - {id: a, match: {prefix: /, headers: [{name: x, regex: \"[a-z]{50}[0-9]{50}\"}], query: [{name: q, regex: \"[a-z]{60}[0-9]{60}\"}]}, cluster: orders}\n",
			want: []string{"routes[0].match.headers[0].regex", "routes[0].match.query[0].regex"},
		},
		{
			name: "ports out of range",
			yaml: "  - {name: bad, endpoints: [{address: 10.0.0.1:70000}, {address: \"10.0.0.1:0\"}]}\n---\napiVersion: gatehouse/v1\nlisteners:\n  - {name: other, address: 0.0.0.0:99999}\n",
			want: []string{`clusters[1].endpoints[0].address: "10.0.0.1:70000" has no valid port`, `clusters[1].endpoints[1].address: "10.0.0.1:0" has no valid port`, `listeners[1].address: "0.0.0.0:99999" has no valid port`},
		},
		{
			name: "static endpoint host name",
			yaml: "  - {name: dns, endpoints: [{address: svc.local:80}]}\n",
			want: []string{"static endpoints are IP addresses; use discovery: strict_dns"},
		},
		{
			name: "shadowed route",
			yaml: "routes:\n  - {id: all, match: {prefix: /api}, cluster: orders}\n  - {id: users, match: {prefix: /api/users, methods: [GET]}, cluster: orders}\n",
			want: []string{`warning: routes[1].match: route "users" is never reached for host "*": route "all" (routes[0]) comes first`},
		},
		{
			name: "not shadowed: earlier route has a header constraint",
			yaml: "routes:\n  - {id: all, match: {prefix: /api, headers: [{name: x-beta, present: true}]}, cluster: orders}\n  - {id: users, match: {prefix: /api/users}, cluster: orders}\n",
		},
		{
			name: "not shadowed: different hosts",
			yaml: "routes:\n  - {id: all, match: {hosts: [a.example.com], prefix: /}, cluster: orders}\n  - {id: users, match: {hosts: [b.example.com], prefix: /}, cluster: orders}\n",
		},
		{
			name: "shadowed exact path by case-insensitive prefix",
			yaml: "routes:\n  - {id: all, match: {prefix: /API, caseInsensitive: true}, cluster: orders}\n  - {id: one, match: {path: /api/x}, cluster: orders}\n",
			want: []string{`route "one" is never reached`},
		},
		{
			// The Kelvin sign lowers (Unicode) to a one-byte "k"; Envoy
			// compares ASCII case-insensitively, so neither a panic nor a
			// warning is right.
			name: "case-insensitive non-ASCII prefix",
			yaml: "routes:\n  - {id: k, match: {prefix: \"/\u212Aelvin\", caseInsensitive: true}, cluster: orders}\n" +
				"  - {id: l, match: {prefix: /kelvin/x, caseInsensitive: true}, cluster: orders}\n",
		},
		{
			name: "identity header edit",
			yaml: "routes:\n  - id: a\n    cluster: orders\n    requestHeaders: {set: [{name: X-Gatehouse-Tier, value: gold}]}\n",
			want: []string{`"X-Gatehouse-Tier" is an identity header`},
		},
		{
			name: "lone percent",
			yaml: "routes:\n  - id: a\n    cluster: orders\n    responseHeaders: {add: [{name: x-a, value: \"100%\"}]}\n",
			want: []string{`"100%" has a '%' at byte 3 that starts no %COMMAND%`},
		},
		{
			// Envoy refuses a route configuration with a command it does
			// not know (found by envoy --mode validate).
			name: "format commands Envoy does not know or take so",
			yaml: "routes:\n  - id: a\n    cluster: orders\n    requestHeaders: {set: [{name: x-a, value: \"%NOPE_CMD%\"}, {name: x-b, value: \"%UPSTREAM_HOST(x)%\"}, {name: x-c, value: \"%REQ%\"}, {name: x-d, value: \"%UPSTREAM_HOST:5%\"}]}\n",
			want: []string{
				"requestHeaders.set[0].value: \"%NOPE_CMD%\" uses %NOPE_CMD%, which is not a format command of Envoy 1.40",
				"requestHeaders.set[1].value: \"%UPSTREAM_HOST(x)%\" gives %UPSTREAM_HOST% arguments or a length, which it does not take",
				"requestHeaders.set[2].value: \"%REQ%\" uses %REQ% without its arguments",
				"requestHeaders.set[3].value: \"%UPSTREAM_HOST:5%\" gives %UPSTREAM_HOST% arguments",
			},
		},
		{
			name: "format strings Envoy accepts",
			yaml: "routes:\n  - id: a\n    cluster: orders\n    requestHeaders: {set: [{name: x-a, value: \"%START_TIME(%s.%3f)% 100%% %REQ(x-foo?x-bar):10% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"}]}\n",
		},
		{
			name: "node groups",
			yaml: "  - {name: other, endpoints: [{address: 10.0.0.2:80}]}\n" +
				"routes:\n  - {id: a, cluster: orders}\n",
		},
		{
			name: "retry conditions and timeouts",
			yaml: "routes:\n  - {id: a, cluster: orders, timeout: 1s, retry: {on: \"5xx,sometimes\", perTryTimeout: 2s}}\n",
			want: []string{`routes[0].retry.on: "sometimes" is not a retry condition`, "warning: routes[0].retry.perTryTimeout: 2s is longer than the route timeout 1s"},
		},
		{
			name: "grpc listener restrictions",
			yaml: "  - {name: dns, discovery: strict_dns, endpoints: [{address: svc:80}]}\n" +
				"---\napiVersion: gatehouse/v1\nlisteners:\n  - {name: echo.test, kind: grpc, address: 0.0.0.0:1}\n" +
				"routes:\n  - {id: a, listeners: [echo.test], cluster: dns, match: {query: [{name: q, exact: x}]}}\n" +
				"  - {id: b, listeners: [echo.test], redirect: {host: x.example.com}}\n",
			want: []string{
				"listeners[1].address: a grpc listener is an API listener",
				`cluster "dns" uses strict_dns discovery, but proxyless gRPC clients need endpoints over EDS`,
				"routes[0].match.query: gRPC requests have no query string",
				"routes[1]: a route on a grpc listener must send to a cluster",
			},
		},
		{
			name: "outlier detection and health check",
			yaml: "  - name: od\n    endpoints: [{address: 10.0.0.3:80}]\n    healthCheck: {interval: 1s, timeout: 2s, path: healthz}\n" +
				"    outlierDetection: {maxEjectionPercent: 150, failurePercentage: {threshold: 101}, consecutiveLocalOriginFailure: {threshold: 2}}\n" +
				"  - {name: g, endpoints: [{address: 10.0.0.4:80}], healthCheck: {kind: grpc}}\n",
			want: []string{
				"clusters[2].healthCheck.kind: grpc health checks speak HTTP/2",
				"clusters[1].healthCheck.timeout: 2s is longer than the interval 1s",
				`clusters[1].healthCheck.path: "healthz" must start with /`,
				"clusters[1].outlierDetection.maxEjectionPercent: 150 is not a percentage",
				"clusters[1].outlierDetection.failurePercentage.threshold: 101 is not a percentage",
				"consecutiveLocalOriginFailure: counts only with splitExternalLocalOriginErrors: true",
			},
		},
		{
			name: "tls paths and verification",
			yaml: "  - {name: up, endpoints: [{address: 10.0.0.3:443}], tls: {sni: up.example.com}}\n" +
				"---\napiVersion: gatehouse/v1\nlisteners:\n  - {name: tls, address: 0.0.0.0:8443, tls: {certFile: certs/server.crt, keyFile: /k}}\n",
			want: []string{
				"clusters[1].tls.caFile: is required to verify the upstream certificate",
				`listeners[1].tls.certFile: "certs/server.crt" must be an absolute path`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := loadXDS(t, tt.yaml)
			got := errs.Error()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Load() problems =\n%s\nwant a line containing %q", got, w)
				}
			}
			if len(tt.want) == 0 && len(errs) > 0 {
				t.Errorf("Load() problems =\n%s\nwant none", got)
			}
		})
	}
}

func TestNodeGroupValidation(t *testing.T) {
	_, errs := loadXDS(t, `routes:
  - {id: a, cluster: orders}
`)
	if len(errs) != 0 {
		t.Fatalf("base config: %v", errs)
	}
	cfg, err := LoadBytes("g.yaml", []byte(`apiVersion: gatehouse/v1
xds:
  defaultGroup: nowhere
  nodeGroups:
    - {name: edge, nodeIds: [n1], listeners: [public, missing]}
    - {name: edge, nodeIds: [n1], nodeClusters: [c]}
    - {name: default, nodeClusters: [c]}
    - {name: empty}
listeners:
  - {name: public, address: 0.0.0.0:8080}
`), LoadOptions{})
	if err == nil {
		t.Fatalf("LoadBytes() = %v; want errors", cfg)
	}
	got := err.Error()
	for _, w := range []string{
		`xds.nodeGroups[0].listeners[1]: no listener is named "missing"`,
		`xds.nodeGroups[1].name: duplicate group name "edge"`,
		`xds.nodeGroups[1].nodeIds[0]: node id "n1" is also in group "edge"`,
		`xds.nodeGroups[2].name: "default" is the built-in group`,
		`xds.nodeGroups[2].nodeClusters[0]: node cluster "c" is also in group "edge"`,
		`xds.nodeGroups[3]: group "empty" has no nodeIds and no nodeClusters`,
		`xds.defaultGroup: no node group is named "nowhere"`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("LoadBytes() errors =\n%s\nwant a line containing %q", got, w)
		}
	}
}

func TestServiceAddresses(t *testing.T) {
	cfg, err := LoadBytes("s.yaml", []byte(`apiVersion: gatehouse/v1
authz: {address: 0.0.0.0:9191}
ratelimit: {}
extproc: {}
xds: {services: {authz: "gatehouse:9191", ratelimit: ["10.0.0.1:9193", "10.0.0.2:9193"]}}
`), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		comp string
		want []string
		ok   bool
	}{
		{ComponentAuthz, []string{"gatehouse:9191"}, true},
		{ComponentRateLimit, []string{"10.0.0.1:9193", "10.0.0.2:9193"}, true},
		{ComponentExtProc, []string{"127.0.0.1:9192"}, true},
	} {
		if got, ok := cfg.ServiceAddresses(tt.comp); !slices.Equal(got, tt.want) || ok != tt.ok {
			t.Errorf("ServiceAddresses(%q) = %q, %v; want %q, %v", tt.comp, got, ok, tt.want, tt.ok)
		}
	}
	cfg, err = LoadBytes("s.yaml", []byte("apiVersion: gatehouse/v1\nratelimit: {}\n"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := cfg.ServiceAddresses(ComponentAuthz); got != nil || ok {
		t.Errorf("ServiceAddresses(authz) without authz = %q, %v; want nil, false", got, ok)
	}
	_, err = LoadBytes("s.yaml", []byte(`apiVersion: gatehouse/v1
ratelimit: {}
xds: {services: {ratelimit: ["10.0.0.1:9193", "nope", "10.0.0.1:9193"], authz: {a: b}}}
`), LoadOptions{})
	for _, want := range []string{
		`s.yaml:3: xds.services.ratelimit[1]: "nope"`,
		`s.yaml:3: xds.services.ratelimit[2]: "10.0.0.1:9193" is listed twice`,
		`xds.services.authz: expected host:port or a list of host:port`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadBytes() = %v; want an error containing %q", err, want)
		}
	}
}
