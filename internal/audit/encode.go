package audit

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/jsonx"
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
		b = jsonx.AppendString(b, truncate(e.Detail, maxDetail))
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
	return jsonx.AppendString(b, truncate(v, maxField))
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
