package extproc

import (
	"github.com/gatehouse/gatehouse/extproc/hygiene"
)

// without returns hs less the named headers.
func without(hs []hygiene.Header, names []string) []hygiene.Header {
	if len(names) == 0 {
		return hs
	}
	out := make([]hygiene.Header, 0, len(hs))
	for _, h := range hs {
		drop := false
		for _, n := range names {
			if h.Name == n {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, h)
		}
	}
	return out
}

// carrier reads trace context from request headers for the propagator.
type carrier []hygiene.Header

func (c carrier) Get(key string) string {
	v, _ := headerValue(c, key)
	return v
}

func (c carrier) Set(string, string) {}

func (c carrier) Keys() []string {
	out := make([]string, len(c))
	for i, h := range c {
		out[i] = h.Name
	}
	return out
}
