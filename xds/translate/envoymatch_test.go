package translate_test

import (
	"net/url"
	"regexp"
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// envoyRequest is a request as Envoy's router sees it.
type envoyRequest struct {
	host, path, method string
	headers            map[string]string
}

// envoyMatch picks a route from a RouteConfiguration the way Envoy's
// router does (from Envoy's documented semantics, independently of
// internal/routematch): the virtual host by the most specific domain —
// exact, then the longest "*suffix", then the longest "prefix*", then "*",
// never falling through — then the first route whose match holds.
func envoyMatch(rc *routev3.RouteConfiguration, req envoyRequest) (string, bool) {
	host := strings.ToLower(req.host)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasPrefix(host, "[") {
		host = host[:i] // strip_any_host_port
	}
	type cand struct {
		vh    *routev3.VirtualHost
		rank  int
		score int
	}
	var best *cand
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			var c *cand
			switch {
			case d == "*":
				c = &cand{vh, 0, 0}
			case strings.HasPrefix(d, "*"):
				if len(host) > len(d)-1 && strings.HasSuffix(host, d[1:]) {
					c = &cand{vh, 2, len(d)}
				}
			case strings.HasSuffix(d, "*"):
				if len(host) > len(d)-1 && strings.HasPrefix(host, d[:len(d)-1]) {
					c = &cand{vh, 1, len(d)}
				}
			case d == host:
				c = &cand{vh, 3, len(d)}
			}
			if c != nil && (best == nil || c.rank > best.rank || c.rank == best.rank && c.score > best.score) {
				best = c
			}
		}
	}
	if best == nil {
		return "", false
	}
	for _, r := range best.vh.GetRoutes() {
		if routeMatches(r.GetMatch(), req) {
			return r.GetName(), true
		}
	}
	return "", false
}

func routeMatches(m *routev3.RouteMatch, req envoyRequest) bool {
	path, rawQuery, _ := strings.Cut(req.path, "?")
	ci := m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()
	switch {
	case m.GetSafeRegex() != nil:
		if !fullMatch(m.GetSafeRegex().GetRegex(), path) {
			return false
		}
	case m.GetPath() != "":
		if ci && !strings.EqualFold(path, m.GetPath()) || !ci && path != m.GetPath() {
			return false
		}
	default:
		p := m.GetPrefix()
		if len(req.path) < len(p) {
			return false
		}
		head := req.path[:len(p)]
		if ci && !strings.EqualFold(head, p) || !ci && head != p {
			return false
		}
	}
	for _, h := range m.GetHeaders() {
		var v string
		var ok bool
		if h.GetName() == ":method" {
			v, ok = req.method, true
		} else {
			v, ok = req.headers[h.GetName()]
		}
		var matched bool
		if _, isPresent := h.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_PresentMatch); isPresent {
			matched = ok == h.GetPresentMatch()
		} else if !ok {
			// As HeaderUtility::matchHeaders: an absent header fails a
			// value matcher, inverted or not.
			return false
		} else {
			matched = stringMatches(h.GetStringMatch(), v)
		}
		if matched == h.GetInvertMatch() {
			return false
		}
	}
	if len(m.GetQueryParameters()) > 0 {
		q, _ := url.ParseQuery(rawQuery)
		for _, qm := range m.GetQueryParameters() {
			vals, ok := q[qm.GetName()]
			if qm.GetPresentMatch() {
				if !ok {
					return false
				}
				continue
			}
			if !ok || !stringMatches(qm.GetStringMatch(), vals[0]) {
				return false
			}
		}
	}
	return true
}

func stringMatches(s *matcherv3.StringMatcher, v string) bool {
	switch p := s.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return v == p.Exact
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(v, p.Prefix)
	case *matcherv3.StringMatcher_SafeRegex:
		return fullMatch(p.SafeRegex.GetRegex(), v)
	}
	return false
}

var reCache = map[string]*regexp.Regexp{}

func fullMatch(re, s string) bool {
	c, ok := reCache[re]
	if !ok {
		c = regexp.MustCompile("^(?:" + re + ")$")
		reCache[re] = c
	}
	return c.MatchString(s)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
