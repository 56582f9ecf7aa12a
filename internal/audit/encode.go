package audit

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Field size caps keep every line far below maxLine (a reader's bound),
// whatever a caller puts in an event: a request path or a subject is cut
// at maxField bytes, a config error list at maxDetail.
const (
	maxField  = 1024
	maxDetail = 16 << 10
)

// timeLayout is UTC with a fixed microsecond fraction: lines sort and read
// alike, and every RFC 3339 parser accepts it.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// appendEvent appends e's fields as the members of a JSON object (without
// the braces), in the order of the Event struct, omitting empty ones as
// encoding/json's omitempty would. It is hand-written because the writer
// encodes every line on a machine whose cores serve the decisions:
// encoding/json takes about twice as long and allocates five times per
// line (BenchmarkEncode against BenchmarkEncodeStdlib).
func appendEvent(b []byte, e *Event) []byte {
	t := e.Time.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		// RFC 3339 has four-digit years: a line with another would not
		// parse, and a caller's bad clock must not look like tampering.
		t = time.Now().UTC()
	}
	b = append(b, `"time":"`...)
	b = t.AppendFormat(b, timeLayout)
	b = append(b, '"')
	b = appendField(b, "kind", string(e.Kind), true)
	b = appendField(b, "id", e.ID, false)
	b = appendField(b, "request_id", e.RequestID, false)
	b = appendField(b, "route", e.Route, false)
	b = appendField(b, "decision", e.Decision, false)
	b = appendField(b, "reason", e.Reason, false)
	b = appendField(b, "auth_method", e.AuthMethod, false)
	b = appendField(b, "subject", e.Subject, false)
	b = appendField(b, "issuer", e.Issuer, false)
	b = appendField(b, "spiffe_id", e.SPIFFEID, false)
	b = appendField(b, "tier", e.Tier, false)
	b = appendField(b, "client_addr", e.ClientAddr, false)
	b = appendField(b, "method", e.Method, false)
	b = appendField(b, "path", e.Path, false)
	b = appendField(b, "policy_version", e.PolicyVersion, false)
	if e.LatencyUS != 0 {
		b = append(b, `,"latency_us":`...)
		b = strconv.AppendInt(b, e.LatencyUS, 10)
	}
	b = appendField(b, "node", e.Node, false)
	b = appendField(b, "version", e.Version, false)
	if e.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendString(b, truncate(e.Detail, maxDetail))
	}
	return b
}

func appendField(b []byte, name, v string, always bool) []byte {
	if v == "" && !always {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, truncate(v, maxField))
}

// truncate cuts s to at most n bytes at a rune boundary and marks the cut
// with "…", so a reader sees that the value is not whole.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes what JSON requires
// (quote, backslash, control characters), U+2028 and U+2029 (which break
// JavaScript readers) and replaces invalid UTF-8 with U+FFFD, as
// encoding/json does; it leaves <, > and & alone (no HTML here). It also
// escapes DEL and the C1 controls U+0080-U+009F: subjects and claims come
// from callers, and an operator reads this file with cat or tail.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' || (r >= 0x80 && r <= 0x9f) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
