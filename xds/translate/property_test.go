package translate_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/routematch"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// Pools the random configs and requests draw from: small, so that routes
// collide on hosts and paths and the interesting orderings happen.
var (
	hostPool    = []string{"api.example.com", "*.example.com", "api.*", "*", "b.example.com", "*-x.example.com"}
	reqHosts    = []string{"api.example.com", "API.example.com:8080", "b.example.com", "c.example.com", "api.other.org", "other.org", "a-x.example.com", "example.com"}
	prefixPool  = []string{"/", "/api", "/api/", "/api/users", "/API", "/static"}
	pathPool    = []string{"/api/users", "/healthz", "/API/users", "/static/app.js"}
	regexPool   = []string{"/api/v[0-9]+/.*", "/static/.*\\.js", "/[a-z]+"}
	reqPaths    = []string{"/", "/api", "/api/users", "/api/users?id=1", "/API/users", "/api/v2/x", "/static/app.js", "/healthz", "/healthz?x=1", "/other", "/apix"}
	methodPool  = []string{"GET", "POST", "PUT"}
	headerNames = []string{"x-beta", "content-type"}
)

// randomConfig writes a random but valid-looking config YAML from r.
func randomConfig(r *rand.Rand) string {
	var b strings.Builder
	b.WriteString("apiVersion: gatehouse/v1\nxds: {}\n")
	if r.IntN(2) == 0 {
		b.WriteString("authz: {}\n")
	}
	if r.IntN(2) == 0 {
		b.WriteString("ratelimit: {}\n")
	}
	if r.IntN(2) == 0 {
		b.WriteString("extproc: {}\n")
	}
	b.WriteString("listeners:\n  - {name: public, address: 0.0.0.0:8080}\n")
	b.WriteString("clusters:\n  - {name: c0, endpoints: [{address: 10.0.0.1:80}]}\n  - {name: c1, discovery: strict_dns, endpoints: [{address: svc:80}], outlierDetection: {failurePercentage: {}}}\n")
	b.WriteString("routes:\n")
	n := 1 + r.IntN(8)
	for i := range n {
		fmt.Fprintf(&b, "  - id: r%d\n    match:\n", i)
		if k := r.IntN(3); k > 0 {
			hosts := map[string]bool{}
			for range k {
				hosts[hostPool[r.IntN(len(hostPool))]] = true
			}
			fmt.Fprintf(&b, "      hosts: [%s]\n", quoteAll(sortedKeys(hosts)))
		}
		switch r.IntN(4) {
		case 0:
			fmt.Fprintf(&b, "      prefix: %q\n", prefixPool[r.IntN(len(prefixPool))])
		case 1:
			fmt.Fprintf(&b, "      path: %q\n", pathPool[r.IntN(len(pathPool))])
		case 2:
			fmt.Fprintf(&b, "      regex: %q\n", regexPool[r.IntN(len(regexPool))])
		}
		if r.IntN(4) == 0 {
			b.WriteString("      caseInsensitive: true\n")
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "      methods: [%s]\n", methodPool[r.IntN(len(methodPool))])
		}
		if r.IntN(3) == 0 {
			name := headerNames[r.IntN(len(headerNames))]
			invert := r.IntN(3) == 0 // an inverted value match must still fail on an absent header
			switch r.IntN(3) {
			case 0:
				fmt.Fprintf(&b, "      headers: [{name: %s, present: %v, invert: %v}]\n", name, r.IntN(2) == 0, r.IntN(2) == 0)
			case 1:
				fmt.Fprintf(&b, "      headers: [{name: %s, prefix: \"app\", invert: %v}]\n", name, invert)
			default:
				fmt.Fprintf(&b, "      headers: [{name: %s, exact: \"1\", invert: %v}]\n", name, invert)
			}
		}
		if r.IntN(4) == 0 {
			b.WriteString("      query: [{name: id, exact: \"1\"}]\n")
		}
		switch r.IntN(5) {
		case 0:
			b.WriteString("    weightedClusters: [{name: c0, weight: 3}, {name: c1, weight: 1}]\n")
		case 1:
			b.WriteString("    directResponse: {status: 204}\n")
		case 2:
			b.WriteString("    redirect: {scheme: https, code: 302}\n")
		default:
			fmt.Fprintf(&b, "    cluster: c%d\n", r.IntN(2))
		}
		if r.IntN(3) == 0 {
			b.WriteString("    retry: {on: \"5xx,reset\", numRetries: 2}\n")
		}
	}
	return b.String()
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// checkConfig is the property every valid config must have: it
// translates into resources that pass Envoy's validation rules in
// consistent snapshots, and the route Envoy would pick for any request is
// the one internal/routematch picks.
func checkConfig(t *testing.T, r *rand.Rand, yaml string, compare bool) {
	t.Helper()
	cfg, err := config.LoadBytes("random.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		var errs config.Errors
		if !errors.As(err, &errs) {
			t.Fatalf("LoadBytes() = %v; want config.Errors", err)
		}
		return // invalid configs are refused, which is all they owe us
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatalf("Translate() = %v for a valid config:\n%s", err, yaml)
	}
	if _, err := snapshot.Build(cfg, res); err != nil {
		t.Fatalf("snapshot.Build() = %v for a valid config:\n%s", err, yaml)
	}
	if !compare {
		// Arbitrary input: listeners may serve subsets of the routes,
		// so only the pipeline's own guarantees apply.
		return
	}
	table := routematch.New(cfg.Routes)
	rc := res.Routes[0]
	for range 40 {
		req := envoyRequest{
			host:    reqHosts[r.IntN(len(reqHosts))],
			path:    reqPaths[r.IntN(len(reqPaths))],
			method:  methodPool[r.IntN(len(methodPool))],
			headers: map[string]string{},
		}
		if r.IntN(2) == 0 {
			req.headers[headerNames[r.IntN(len(headerNames))]] = []string{"1", "application/json", "x"}[r.IntN(3)]
		}
		gotID, gotOK := envoyMatch(rc, req)
		wantID, wantOK := table.Match(routematch.Request{Host: req.host, Path: req.path, Method: req.method,
			Headers: routematch.HeaderFunc(func(n string) (string, bool) { v, ok := req.headers[n]; return v, ok })})
		if gotID != wantID || gotOK != wantOK {
			t.Fatalf("request %+v: Envoy would pick %q (%v), routematch picks %q (%v)\nconfig:\n%s", req, gotID, gotOK, wantID, wantOK, yaml)
		}
	}
}

func TestTranslateMatchesRoutematch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkConfig(t, r, randomConfig(r), true) })
	}
}

// FuzzTranslate drives the generator with the fuzzer's bytes, and also
// tries them as a config file of their own: no input may crash the
// pipeline, and every valid config must translate into valid resources
// that route like routematch.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte("seed"), "")
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, "apiVersion: gatehouse/v1\nxds: {}\nlisteners: [{name: l, address: 0.0.0.0:1}]\nroutes: [{id: a, directResponse: {status: 200}}]\n")
	f.Fuzz(func(t *testing.T, seed []byte, raw string) {
		var s1, s2 uint64
		for i, c := range seed {
			if i%2 == 0 {
				s1 = s1*131 + uint64(c)
			} else {
				s2 = s2*137 + uint64(c)
			}
		}
		r := rand.New(rand.NewPCG(s1, s2))
		checkConfig(t, r, randomConfig(r), true)
		if raw != "" {
			checkConfig(t, r, raw, false)
		}
	})
}
