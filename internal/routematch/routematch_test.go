package routematch

import (
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

func yes() *bool { b := true; return &b }

func TestMatch(t *testing.T) {
	routes := []config.Route{
		{ID: "exact-host-orders", Match: config.Match{Hosts: []string{"api.example.com"}, Prefix: "/orders", Methods: []string{"GET", "HEAD"}}},
		{ID: "exact-host-catchall", Match: config.Match{Hosts: []string{"api.example.com"}}},
		{ID: "suffix-short", Match: config.Match{Hosts: []string{"*.example.com"}, Prefix: "/"}},
		{ID: "suffix-long", Match: config.Match{Hosts: []string{"*.eu.example.com"}, Path: "/status"}},
		{ID: "prefix-wild", Match: config.Match{Hosts: []string{"internal.*"}, Prefix: "/"}},
		{ID: "regex", Match: config.Match{Regex: config.MustRegex(`/users/[0-9]+`)}},
		{ID: "header", Match: config.Match{Prefix: "/canary", Headers: []config.HeaderMatch{{Name: "x-canary", Exact: "1"}}}},
		{ID: "header-inverted", Match: config.Match{Prefix: "/canary", Headers: []config.HeaderMatch{{Name: "x-canary", Present: yes(), Invert: true}}}},
		{ID: "query", Match: config.Match{Prefix: "/search", Query: []config.QueryMatch{{Name: "q", Present: yes()}}}},
		{ID: "ci", Match: config.Match{Prefix: "/CaseLess", CaseInsensitive: true}},
		{ID: "ci-path", Match: config.Match{Path: "/kelvin", CaseInsensitive: true}},
		{ID: "any", Match: config.Match{Prefix: "/"}},
	}
	tbl := New(routes)
	tests := []struct {
		host, path, method string
		headers            map[string]string
		want               string
		ok                 bool
	}{
		{host: "api.example.com", path: "/orders/7", method: "GET", want: "exact-host-orders", ok: true},
		{host: "API.example.com:8443", path: "/orders", method: "HEAD", want: "exact-host-orders", ok: true},
		{host: "api.example.com", path: "/orders", method: "POST", want: "exact-host-catchall", ok: true},
		// The exact host wins over *.example.com; no fall-through.
		{host: "api.example.com", path: "/status", method: "GET", want: "exact-host-catchall", ok: true},
		{host: "www.example.com", path: "/x", method: "GET", want: "suffix-short", ok: true},
		// The longest suffix wins, and within it nothing matches: no fall-through to the shorter one.
		{host: "a.eu.example.com", path: "/status", method: "GET", want: "suffix-long", ok: true},
		{host: "a.eu.example.com", path: "/other", method: "GET", ok: false},
		// "*.example.com" needs at least one character before the suffix.
		{host: ".example.com", path: "/", method: "GET", want: "any", ok: true},
		{host: "internal.corp", path: "/", method: "GET", want: "prefix-wild", ok: true},
		{host: "other", path: "/users/42", method: "GET", want: "regex", ok: true},
		{host: "other", path: "/users/42?x=1", method: "GET", want: "regex", ok: true},
		{host: "other", path: "/users/42/x", method: "GET", want: "any", ok: true},
		{host: "other", path: "/canary", method: "GET", headers: map[string]string{"x-canary": "1"}, want: "header", ok: true},
		{host: "other", path: "/canary", method: "GET", headers: map[string]string{"x-canary": "2"}, want: "any", ok: true},
		{host: "other", path: "/canary", method: "GET", want: "header-inverted", ok: true},
		{host: "other", path: "/search?q=go", method: "GET", want: "query", ok: true},
		{host: "other", path: "/search?x=1", method: "GET", want: "any", ok: true},
		{host: "other", path: "/caseless/x", method: "GET", want: "ci", ok: true},
		{host: "other", path: "/KELVIN", method: "GET", want: "ci-path", ok: true},
		// Envoy folds ASCII only: the Kelvin sign is not a "k".
		{host: "other", path: "/\u212Aelvin", method: "GET", want: "any", ok: true},
		{host: "[::1]:8080", path: "/", method: "GET", want: "any", ok: true},
	}
	for _, tt := range tests {
		req := Request{Host: tt.host, Path: tt.path, Method: tt.method, Headers: HeaderFunc(func(n string) (string, bool) {
			v, ok := tt.headers[n]
			return v, ok
		})}
		got, ok := tbl.Match(req)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Match(%s %s%s %v) = %q, %v; want %q, %v", tt.method, tt.host, tt.path, tt.headers, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNoRoutes(t *testing.T) {
	tbl := New(nil)
	if id, ok := tbl.Match(Request{Host: "x", Path: "/"}); ok {
		t.Errorf("Match() on an empty table = %q, true; want no match", id)
	}
}

func BenchmarkMatch(b *testing.B) {
	var routes []config.Route
	for i := range 200 {
		routes = append(routes, config.Route{ID: "r" + string(rune('a'+i%26)), Match: config.Match{Hosts: []string{"api.example.com"}, Prefix: "/p" + string(rune('a'+i%26)) + "/"}})
	}
	routes = append(routes, config.Route{ID: "last", Match: config.Match{Hosts: []string{"api.example.com"}, Prefix: "/"}})
	tbl := New(routes)
	req := Request{Host: "api.example.com:443", Path: "/zzz?x=1", Method: "GET"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tbl.Match(req); !ok {
			b.Fatal("no match")
		}
	}
}

// TestInvertedValueMatchOnAbsentHeader: Envoy's HeaderUtility::matchHeaders
// answers "no match" for an absent header under an exact, prefix or regex
// matcher whether or not it is inverted; only an inverted present-match
// accepts an absent header. The fallback must pick the route Envoy picks,
// or authz would apply another route's policy.
func TestInvertedValueMatchOnAbsentHeader(t *testing.T) {
	routes := []config.Route{
		{ID: "not-internal", Match: config.Match{Prefix: "/", Headers: []config.HeaderMatch{{Name: "x-env", Exact: "internal", Invert: true}}}},
		{ID: "not-prefixed", Match: config.Match{Prefix: "/", Headers: []config.HeaderMatch{{Name: "x-tag", Prefix: "a", Invert: true}}}},
		{ID: "not-regex", Match: config.Match{Prefix: "/", Headers: []config.HeaderMatch{{Name: "x-num", Regex: config.MustRegex("[0-9]+"), Invert: true}}}},
		{ID: "any", Match: config.Match{Prefix: "/"}},
	}
	tbl := New(routes)
	tests := []struct {
		headers map[string]string
		want    string
	}{
		{nil, "any"},
		{map[string]string{"x-env": "internal"}, "any"},
		{map[string]string{"x-env": "public"}, "not-internal"},
		{map[string]string{"x-tag": "abc"}, "any"},
		{map[string]string{"x-tag": "zzz"}, "not-prefixed"},
		{map[string]string{"x-num": "12"}, "any"},
		{map[string]string{"x-num": "x"}, "not-regex"},
	}
	for _, tt := range tests {
		req := Request{Host: "h", Path: "/", Method: "GET", Headers: HeaderFunc(func(n string) (string, bool) {
			v, ok := tt.headers[n]
			return v, ok
		})}
		if got, _ := tbl.Match(req); got != tt.want {
			t.Errorf("Match(headers %v) = %q; want %q", tt.headers, got, tt.want)
		}
	}
}
