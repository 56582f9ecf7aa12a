package server

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// maxDetail bounds the NACK detail kept, logged and audited: Envoy's
// messages can quote whole resources.
const maxDetail = 2048

// truncate cuts a NACK's detail to at most maxDetail bytes at a rune
// boundary: a cut inside a multi-byte character would leave invalid UTF-8
// in the log line and in /xds/nodes.
func truncate(s string) string {
	n := maxDetail
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func nowUTC() time.Time { return time.Now().UTC() }

// mapDetail finds the config elements a NACK's error detail names. Envoy
// quotes the names of the resources it rejects (listener/public,
// routes/public, a route name, a cluster name); gatehouse's names carry
// their origin, so each name found maps back to a listener, route or
// cluster of the config, with file:line.
func mapDetail(set *snapshot.Set, detail string) []translate.Origin {
	if set == nil || set.Resources == nil {
		return nil
	}
	var out []translate.Origin
	seen := map[translate.Origin]bool{}
	for _, tok := range tokens(detail) {
		for _, o := range set.Resources.Origins[tok] {
			if !seen[o] {
				seen[o] = true
				out = append(out, o)
			}
		}
	}
	return out
}

// tokens splits text into candidate resource names: runs of the
// characters gatehouse names are made of.
func tokens(s string) []string {
	isName := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/*", r)
	}
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return !isName(r) }) {
		f = strings.TrimRight(f, ".-/")
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

func describeOrigins(os []translate.Origin) string {
	parts := make([]string, 0, len(os))
	for _, o := range os {
		parts = append(parts, o.String())
	}
	return strings.Join(parts, "; ")
}
