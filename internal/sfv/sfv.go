// Package sfv renders HTTP structured-field values (RFC 8941) for the
// RateLimit and RateLimit-Policy headers that the rate limiter and the
// budget stage both send.
package sfv

import "strings"

// String renders s as a structured-field string (RFC 8941 §3.3.3):
// printable ASCII with '"' and '\' escaped; any other byte becomes '?',
// since a header carrying it would be refused by a strict parser.
func String(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
