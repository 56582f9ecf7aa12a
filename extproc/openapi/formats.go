package openapi

import (
	"encoding/base64"
	"errors"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
)

// The string formats gatehouse checks, by the RFCs OpenAPI and JSON
// Schema name for them. kin-openapi checks only date, date-time and byte
// by default (and quotes the value in its date errors); these replace its
// checks per validation, not in its global table, so that a document with
// format checks turned off does not change another's. Every error names
// the rule, never the value.
var formatCheckers = map[string]func(string) error{
	"email":     checkEmail,
	"uuid":      checkUUID,
	"uri":       checkURI,
	"hostname":  checkHostname,
	"ipv4":      func(s string) error { return checkIP(s, true) },
	"ipv6":      func(s string) error { return checkIP(s, false) },
	"date":      checkDate,
	"date-time": checkDateTime,
	"byte":      checkByte,
}

// CheckedFormats lists the string formats checked, for docs and tests.
func CheckedFormats() []string {
	return []string{"email", "uuid", "uri", "hostname", "ipv4", "ipv6", "date", "date-time", "byte"}
}

// formatOptions are the schema options for a document: each checked
// format's validator, or (formats off) one that accepts anything, which
// also silences kin-openapi's global date, date-time and byte checks.
func formatOptions(ignore bool) []openapi3.SchemaValidationOption {
	m := make(map[string]openapi3.StringFormatValidator, len(formatCheckers))
	for name, check := range formatCheckers {
		if ignore {
			check = func(string) error { return nil }
		}
		m[name] = openapi3.NewCallbackValidator(check)
	}
	return []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidators(m)}
}

// checkEmail: an RFC 5322 addr-spec (local@domain, the local part maybe
// quoted) alone: no display name, angle brackets, comments or spaces
// around it, as RFC 5321 mailboxes are written.
func checkEmail(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || strings.ContainsAny(s, "<>()") || strings.TrimSpace(s) != s ||
		(a.Address != s && !strings.HasPrefix(s, `"`)) {
		return errors.New("not an e-mail address (local@domain, RFC 5322 addr-spec)")
	}
	return nil
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkUUID: the RFC 9562 string form, 8-4-4-4-12 hex digits, any version.
func checkUUID(s string) error {
	if !uuidRE.MatchString(s) {
		return errors.New("not a UUID (8-4-4-4-12 hex digits, RFC 9562)")
	}
	return nil
}

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// checkURI: an absolute URI (RFC 3986 §4.3): a scheme, then no white
// space or control characters and valid percent-encodings.
func checkURI(s string) error {
	bad := errors.New("not an absolute URI (scheme:..., RFC 3986)")
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}' {
			return bad
		}
	}
	u, err := url.Parse(s)
	if err != nil || !schemeRE.MatchString(u.Scheme) {
		return bad
	}
	return nil
}

// checkHostname: an RFC 1123 host name: dot-separated labels of 1-63
// letters, digits and hyphens, not starting or ending with a hyphen, 253
// characters at most.
func checkHostname(s string) error {
	bad := errors.New("not a host name (RFC 1123 labels of letters, digits and hyphens)")
	if len(s) == 0 || len(s) > 253 {
		return bad
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return bad
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return bad
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			return bad
		}
		if label++; label > 63 {
			return bad
		}
	}
	if label == 0 || s[len(s)-1] == '-' {
		return bad
	}
	return nil
}

// checkIP: dotted-quad IPv4 (no leading zeros) or RFC 4291 IPv6 text,
// without a zone.
func checkIP(s string, v4 bool) error {
	a, err := netip.ParseAddr(s)
	switch {
	case v4 && (err != nil || !a.Is4()):
		return errors.New("not an IPv4 address (dotted quad)")
	case !v4 && (err != nil || !a.Is6() || a.Zone() != ""):
		return errors.New("not an IPv6 address (RFC 4291, no zone)")
	}
	return nil
}

var (
	dateRE     = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	dateTimeRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)
)

// checkDate: an RFC 3339 full-date that exists in the calendar.
func checkDate(s string) error {
	if !dateRE.MatchString(s) {
		return errors.New("not a date (YYYY-MM-DD, RFC 3339 full-date)")
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return errors.New("not a date of the calendar (RFC 3339 full-date)")
	}
	return nil
}

// checkDateTime: an RFC 3339 date-time with a time zone. A leap second
// (:60) is accepted, as RFC 3339 allows it.
func checkDateTime(s string) error {
	if !dateTimeRE.MatchString(s) {
		return errors.New("not a date-time (YYYY-MM-DDThh:mm:ss with Z or an offset, RFC 3339)")
	}
	v := []byte(s)
	v[10] = 'T'
	if last := len(v) - 1; v[last] == 'z' {
		v[last] = 'Z'
	}
	leap := string(v[17:19]) == "60"
	if leap {
		v[17], v[18] = '5', '9'
	}
	if _, err := time.Parse(time.RFC3339Nano, string(v)); err != nil {
		return errors.New("not a date-time of the calendar (RFC 3339)")
	}
	return nil
}

// checkByte: base64 with padding (RFC 4648 §4), as OpenAPI's byte format
// says.
func checkByte(s string) error {
	if _, err := base64.StdEncoding.Strict().DecodeString(s); err != nil {
		return errors.New("not base64 (RFC 4648 §4, padded)")
	}
	return nil
}
