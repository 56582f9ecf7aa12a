package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/contract"
)

// checkShadowing warns about routes that can never match because an
// earlier route of the same virtual host matches every request they
// would: Envoy (and internal/routematch) take the first match and never
// fall through. The check is conservative: it reports only what it can
// prove (a covering prefix or equal path/regex, and constraints of the
// earlier route that are a subset of the later one's).
//
// It runs per listener and per host pattern, as the translator groups
// routes into virtual hosts, and indexes earlier routes by their path
// matcher so that a table of thousands of routes costs a map lookup per
// character of each path, not a comparison with every earlier route.
func checkShadowing(c *Config, errs *Errors) {
	reported := map[[2]int]bool{}
	for li := range c.Listeners {
		l := &c.Listeners[li]
		byHost := map[string][]int{}
		var hosts []string
		for i := range c.Routes {
			r := &c.Routes[i]
			if !r.ServedBy(l) {
				continue
			}
			hs := r.Match.Hosts
			if len(hs) == 0 {
				hs = []string{"*"}
			}
			for _, h := range hs {
				h = strings.ToLower(h)
				if _, ok := byHost[h]; !ok {
					hosts = append(hosts, h)
				}
				if list := byHost[h]; len(list) == 0 || list[len(list)-1] != i {
					byHost[h] = append(list, i)
				}
			}
		}
		for _, h := range hosts {
			shadowIn(c, h, byHost[h], reported, errs)
		}
	}
}

type pathIndex struct {
	exact, ciExact   map[string][]int
	prefix, ciPrefix map[string][]int
	regex            map[string][]int
}

func shadowIn(c *Config, host string, routes []int, reported map[[2]int]bool, errs *Errors) {
	ix := pathIndex{
		exact: map[string][]int{}, ciExact: map[string][]int{},
		prefix: map[string][]int{}, ciPrefix: map[string][]int{},
		regex: map[string][]int{},
	}
	for _, b := range routes {
		rb := &c.Routes[b]
		for _, a := range ix.candidates(&rb.Match) {
			ra := &c.Routes[a]
			if reported[[2]int{a, b}] || ra.ID == rb.ID || !constraintsCover(&ra.Match, &rb.Match) {
				continue
			}
			reported[[2]int{a, b}] = true
			errs.Warn(Path("routes").Index(b).Field("match"),
				"route %q is never reached for host %q: route %q (routes[%d]) comes first and matches every request it matches; the first matching route wins",
				rb.ID, host, ra.ID, a)
			break
		}
		ix.add(b, &rb.Match)
	}
}

func (ix *pathIndex) add(i int, m *Match) {
	switch {
	case !m.Regex.IsZero():
		ix.regex[m.Regex.String()] = append(ix.regex[m.Regex.String()], i)
	case m.Path != "":
		if m.CaseInsensitive {
			k := contract.ASCIILower(m.Path)
			ix.ciExact[k] = append(ix.ciExact[k], i)
		} else {
			ix.exact[m.Path] = append(ix.exact[m.Path], i)
		}
	default:
		p := m.Prefix
		if p == "" {
			p = "/"
		}
		if m.CaseInsensitive {
			k := contract.ASCIILower(p)
			ix.ciPrefix[k] = append(ix.ciPrefix[k], i)
		} else {
			ix.prefix[p] = append(ix.prefix[p], i)
		}
	}
}

// candidates lists earlier routes whose path matcher covers m's, in
// config order.
func (ix *pathIndex) candidates(m *Match) []int {
	var out []int
	prefixesOf := func(s string, ci bool) {
		lower := contract.ASCIILower(s)
		for k := 1; k <= len(s); k++ {
			if !ci {
				out = append(out, ix.prefix[s[:k]]...)
			}
			out = append(out, ix.ciPrefix[lower[:k]]...)
		}
	}
	switch {
	case !m.Regex.IsZero():
		out = append(out, ix.regex[m.Regex.String()]...)
		// Only the catch-all prefix surely covers a regex.
		out = append(out, ix.prefix["/"]...)
		out = append(out, ix.ciPrefix["/"]...)
	case m.Path != "":
		if !m.CaseInsensitive {
			out = append(out, ix.exact[m.Path]...)
		}
		out = append(out, ix.ciExact[contract.ASCIILower(m.Path)]...)
		prefixesOf(m.Path, m.CaseInsensitive)
	default:
		p := m.Prefix
		if p == "" {
			p = "/"
		}
		prefixesOf(p, m.CaseInsensitive)
	}
	slices.Sort(out)
	return out
}

// constraintsCover reports whether every request satisfying b's method,
// header and query constraints also satisfies a's.
func constraintsCover(a, b *Match) bool {
	if len(a.Methods) > 0 {
		if len(b.Methods) == 0 {
			return false
		}
		for _, m := range b.Methods {
			if !slices.Contains(a.Methods, m) {
				return false
			}
		}
	}
	for _, h := range a.Headers {
		if !slices.ContainsFunc(b.Headers, func(o HeaderMatch) bool {
			return strings.EqualFold(o.Name, h.Name) && reflect.DeepEqual(normalizeHeader(o), normalizeHeader(h))
		}) {
			return false
		}
	}
	for _, q := range a.Query {
		if !slices.ContainsFunc(b.Query, func(o QueryMatch) bool { return reflect.DeepEqual(o, q) }) {
			return false
		}
	}
	return true
}

func normalizeHeader(h HeaderMatch) HeaderMatch {
	h.Name = strings.ToLower(h.Name)
	return h
}
