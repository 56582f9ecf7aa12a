package jwt

import (
	"strings"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
)

// source is one place a token is read from.
type source struct {
	header string
	prefix string
	cookie string
}

func newSources(cfg []config.TokenSource) []source {
	if len(cfg) == 0 {
		return []source{{header: "authorization", prefix: "Bearer "}}
	}
	out := make([]source, len(cfg))
	for i, s := range cfg {
		out[i] = source{header: s.Header, prefix: s.Prefix, cookie: s.Cookie}
	}
	return out
}

// Extract finds the token in r. It returns core.CredentialsMissing when
// no source holds one, and core.CredentialsAmbiguous when more than one
// does or a header was sent twice (RFC 6750 section 2: a client uses one
// method only). The token is not checked beyond that.
func (v *Verifier) Extract(r *core.Request) (string, core.Code) {
	token := ""
	found := 0
	for i := range v.sources {
		s := &v.sources[i]
		var t string
		var ok bool
		if s.cookie != "" {
			t, ok = cookie(r.Headers["cookie"], s.cookie)
		} else {
			var h string
			if h, ok = r.Headers[s.header]; ok {
				t, ok = cutPrefixFold(h, s.prefix)
			}
		}
		if !ok {
			continue
		}
		found++
		token = t
	}
	switch {
	case found == 0:
		return "", core.CredentialsMissing
	case found > 1:
		return "", core.CredentialsAmbiguous
	}
	// Envoy joins a repeated header with ","; a token never holds one.
	if strings.IndexByte(token, ',') >= 0 {
		return "", core.CredentialsAmbiguous
	}
	return strings.TrimSpace(token), core.OK
}

// StripHeaders lists the headers tokens are read from (cookies are left:
// removing the whole Cookie header would take the others with it).
func (v *Verifier) StripHeaders() []string {
	var out []string
	for _, s := range v.sources {
		if s.header != "" {
			out = append(out, s.header)
		}
	}
	return out
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// cookie returns the value of the named cookie in a Cookie header
// (RFC 6265 section 4.2: "name=value; name2=value2"). A cookie sent twice
// comes back as "," so that Extract refuses it as ambiguous.
func cookie(header, name string) (string, bool) {
	val := ""
	n := 0
	for header != "" {
		var part string
		part, header, _ = strings.Cut(header, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok || k != name {
			continue
		}
		n++
		val = strings.Trim(v, `"`)
	}
	switch n {
	case 0:
		return "", false
	case 1:
		return val, true
	}
	return ",", true
}
