// Package routematch finds the gatehouse route of a request from its host,
// path, method, headers and query, the way Envoy's route table would. The
// components use it only when Envoy did not tell them the route id (a
// hand-written Envoy config): with xds-generated config the id arrives with
// every request (see internal/contract).
//
// Semantics follow Envoy's, as configured by xds: the request host (port
// stripped, lower-cased) selects the virtual host — exact domain, then the
// longest "*.suffix" wildcard, then the longest "prefix.*" wildcard, then
// "*" — and within it routes are tried in config order; the first match
// wins. There is no fall-through to a less specific host.
package routematch

import (
	"net/url"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Request is what the matcher needs of a request. Header names are
// lower-case, as Envoy sends them.
type Request struct {
	Host   string
	Path   string // the :path, with query string
	Method string
	// Headers gives the request's headers (nil: none).
	Headers Headers
}

// Headers looks a request header up by its lower-case name. An interface
// rather than a func, so that a request type with a Header method (authz's)
// is passed without allocating a closure per request.
type Headers interface {
	Header(name string) (value string, ok bool)
}

// HeaderFunc adapts a function to Headers.
type HeaderFunc func(name string) (string, bool)

// Header implements Headers.
func (f HeaderFunc) Header(name string) (string, bool) { return f(name) }

// Table matches requests to route ids. It is immutable and safe for
// concurrent use.
type Table struct {
	exact  map[string][]*route
	suffix []wild // "*.example.com", longest suffix first
	prefix []wild // "example.*", longest prefix first
	any    []*route
}

type wild struct {
	affix  string
	routes []*route
}

type route struct {
	id       string
	prefix   string
	path     string
	re       config.Regex
	ci       bool
	methods  []string
	headers  []headerMatch
	query    []queryMatch
	hasQuery bool
}

type valueMatch struct {
	exact, prefix string
	re            config.Regex
	present       *bool
}

func (m valueMatch) match(v string, ok bool) bool {
	switch {
	case m.present != nil:
		return ok == *m.present
	case !ok:
		return false
	case !m.re.IsZero():
		return m.re.MatchString(v)
	case m.prefix != "":
		return strings.HasPrefix(v, m.prefix)
	default:
		return v == m.exact
	}
}

type headerMatch struct {
	name   string
	invert bool
	valueMatch
}

type queryMatch struct {
	name string
	valueMatch
}

// New builds a table from the configured routes, which must have passed
// config validation.
func New(routes []config.Route) *Table {
	t := &Table{exact: map[string][]*route{}}
	suffix := map[string][]*route{}
	prefix := map[string][]*route{}
	for i := range routes {
		r := compile(&routes[i])
		hosts := routes[i].Match.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		for _, h := range hosts {
			h = contract.ASCIILower(h)
			switch {
			case h == "*":
				t.any = append(t.any, r)
			case strings.HasPrefix(h, "*"):
				suffix[h[1:]] = append(suffix[h[1:]], r)
			case strings.HasSuffix(h, "*"):
				prefix[h[:len(h)-1]] = append(prefix[h[:len(h)-1]], r)
			default:
				t.exact[h] = append(t.exact[h], r)
			}
		}
	}
	t.suffix = sortedWild(suffix)
	t.prefix = sortedWild(prefix)
	return t
}

func sortedWild(m map[string][]*route) []wild {
	out := make([]wild, 0, len(m))
	for k, v := range m {
		out = append(out, wild{affix: k, routes: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].affix) != len(out[j].affix) {
			return len(out[i].affix) > len(out[j].affix)
		}
		return out[i].affix < out[j].affix
	})
	return out
}

// compile builds a route's matcher. Regular expressions come compiled
// from config, anchored at both ends as Envoy's matchers are.
func compile(cr *config.Route) *route {
	m := &cr.Match
	r := &route{id: cr.ID, prefix: m.Prefix, path: m.Path, re: m.Regex, ci: m.CaseInsensitive, methods: m.Methods}
	if r.ci {
		r.prefix, r.path = contract.ASCIILower(r.prefix), contract.ASCIILower(r.path)
	}
	if m.Prefix == "" && m.Path == "" && m.Regex.IsZero() {
		r.prefix = "/"
	}
	for _, h := range m.Headers {
		vm := valueMatch{exact: h.Exact, prefix: h.Prefix, re: h.Regex, present: h.Present}
		r.headers = append(r.headers, headerMatch{name: contract.ASCIILower(h.Name), invert: h.Invert, valueMatch: vm})
	}
	for _, q := range m.Query {
		r.query = append(r.query, queryMatch{name: q.Name, valueMatch: valueMatch{exact: q.Exact, prefix: q.Prefix, re: q.Regex, present: q.Present}})
	}
	r.hasQuery = len(r.query) > 0
	return r
}

// Match returns the id of the first route matching req, and whether one
// matched.
func (t *Table) Match(req Request) (string, bool) {
	routes := t.vhost(normalizeHost(req.Host))
	if len(routes) == 0 {
		return "", false
	}
	path, rawQuery, _ := strings.Cut(req.Path, "?")
	var query url.Values
	for _, r := range routes {
		if r.hasQuery && query == nil {
			query, _ = url.ParseQuery(rawQuery)
			if query == nil {
				query = url.Values{}
			}
		}
		if r.matches(req, path, query) {
			return r.id, true
		}
	}
	return "", false
}

func (t *Table) vhost(host string) []*route {
	if rs, ok := t.exact[host]; ok {
		return rs
	}
	for _, w := range t.suffix {
		// Envoy's suffix wildcard needs at least one character before it.
		if len(host) > len(w.affix) && strings.HasSuffix(host, w.affix) {
			return w.routes
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.affix) && strings.HasPrefix(host, w.affix) {
			return w.routes
		}
	}
	return t.any
}

// normalizeHost lower-cases the host and strips a port, as Envoy's
// strip_any_host_port does (xds sets it on every listener).
func normalizeHost(h string) string {
	h = contract.ASCIILower(h)
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.LastIndex(h, "]"); i >= 0 {
			return h[:i+1]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

func (r *route) matches(req Request, path string, query url.Values) bool {
	switch {
	case !r.re.IsZero():
		if !r.re.MatchString(path) {
			return false
		}
	case r.path != "":
		p := path
		if r.ci {
			p = contract.ASCIILower(p)
		}
		if p != r.path {
			return false
		}
	default:
		// Envoy's prefix match runs on the whole :path, query included.
		p := req.Path
		if r.ci && len(p) >= len(r.prefix) {
			p = contract.ASCIILower(p[:len(r.prefix)])
		}
		if !strings.HasPrefix(p, r.prefix) {
			return false
		}
	}
	if len(r.methods) > 0 {
		ok := false
		for _, m := range r.methods {
			if m == req.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, h := range r.headers {
		var v string
		var ok bool
		if req.Headers != nil {
			v, ok = req.Headers.Header(h.name)
		}
		// As Envoy's HeaderUtility::matchHeaders: an absent header fails a
		// value matcher (exact, prefix, regex) even when it is inverted;
		// only a present-match can accept an absent header.
		if !ok && h.present == nil {
			return false
		}
		if h.match(v, ok) == h.invert {
			return false
		}
	}
	for _, q := range r.query {
		vals, ok := query[q.name]
		v := ""
		if ok && len(vals) > 0 {
			v = vals[0]
		}
		if !q.match(v, ok) {
			return false
		}
	}
	return true
}
