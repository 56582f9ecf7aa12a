package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/gatehouse/gatehouse/internal/contract"
)

// The typed values of the config: each is parsed once, when the config is
// loaded (a bad value is a located error then), and handed to the
// components parsed, so that no component parses a config value again
// and no two places can read one value differently. Each keeps the text
// it was written as, which is what is rendered, hashed and compared.

// sourced is implemented by the typed values; the content hash (hash.go)
// hashes their text, since their parsed form is unexported.
type sourced interface{ source() string }

// decodeScalar parses the text of a scalar node into *dst with parse, or
// says what was expected.
func decodeScalar[T any](n *yaml.Node, dst *T, what string, parse func(string) (T, error)) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected %s", what)
	}
	v, err := parse(n.Value)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

// must is for values known to parse (tests, code): it panics otherwise.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Regex is an RE2 expression that must match a whole value, as Envoy's
// safe_regex matchers do: it is compiled once, anchored at both ends.
// The zero Regex is "not set".
type Regex struct {
	src string
	re  *regexp.Regexp
}

// NewRegex compiles src anchored at both ends; "" is the zero Regex.
func NewRegex(src string) (Regex, error) {
	if src == "" {
		return Regex{}, nil
	}
	re, err := regexp.Compile("^(?:" + src + ")$")
	if err != nil {
		// Compile the expression alone for the message, so that it
		// quotes what was written, not the anchors.
		if _, e := regexp.Compile(src); e != nil {
			err = e
		}
		return Regex{}, fmt.Errorf("%q is not a valid RE2 expression: %s", src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return Regex{src: src, re: re}, nil
}

// MustRegex is NewRegex for expressions known to compile (tests, code).
func MustRegex(src string) Regex { return must(NewRegex(src)) }

// String returns the expression as written (what Envoy is given: its
// matchers anchor by themselves).
func (r Regex) String() string { return r.src }

// IsZero reports whether no expression is set.
func (r Regex) IsZero() bool { return r.src == "" }

// MatchString reports whether the expression matches all of s. The zero
// Regex matches nothing.
func (r Regex) MatchString(s string) bool { return r.re != nil && r.re.MatchString(s) }

func (r Regex) source() string { return r.src }

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Regex) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, r, "an RE2 expression", NewRegex)
}

// MarshalYAML implements yaml.Marshaler.
func (r Regex) MarshalYAML() (any, error) { return r.src, nil }

// Pattern is an RE2 expression searched for within a value (unanchored),
// compiled once.
type Pattern struct {
	src string
	re  *regexp.Regexp
}

// NewPattern compiles src.
func NewPattern(src string) (Pattern, error) {
	re, err := regexp.Compile(src)
	if err != nil {
		return Pattern{}, fmt.Errorf("%q is not a valid RE2 expression: %s", src, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return Pattern{src: src, re: re}, nil
}

// MustPattern is NewPattern for expressions known to compile.
func MustPattern(src string) Pattern { return must(NewPattern(src)) }

// String returns the expression as written.
func (p Pattern) String() string { return p.src }

// Regexp returns the compiled expression (nil for the zero Pattern).
func (p Pattern) Regexp() *regexp.Regexp { return p.re }

func (p Pattern) source() string { return p.src }

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Pattern) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, p, "an RE2 expression", NewPattern)
}

// MarshalYAML implements yaml.Marshaler.
func (p Pattern) MarshalYAML() (any, error) { return p.src, nil }

// CIDR is an IP prefix ("10.0.0.0/8", "2001:db8::/32"), masked: host bits
// written after the prefix length are ignored, as Envoy's CidrRange does.
type CIDR struct {
	src string
	p   netip.Prefix
}

// ParseCIDR parses s.
func ParseCIDR(s string) (CIDR, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return CIDR{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
	}
	return CIDR{src: s, p: p.Masked()}, nil
}

// MustCIDR is ParseCIDR for prefixes known to parse.
func MustCIDR(s string) CIDR { return must(ParseCIDR(s)) }

// Prefix returns the masked prefix.
func (c CIDR) Prefix() netip.Prefix { return c.p }

// String returns the CIDR as written.
func (c CIDR) String() string { return c.src }

func (c CIDR) source() string { return c.src }

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *CIDR) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, c, "a CIDR such as 10.0.0.0/8", ParseCIDR)
}

// MarshalYAML implements yaml.Marshaler.
func (c CIDR) MarshalYAML() (any, error) { return c.src, nil }

// Time is an instant written in RFC 3339 ("2027-01-31T00:00:00Z"). The
// zero Time is "not set".
type Time struct {
	src string
	t   time.Time
}

// ParseTime parses an RFC 3339 time.
func ParseTime(s string) (Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2027-01-31T00:00:00Z", s)
	}
	return Time{src: s, t: t}, nil
}

// MustTime is ParseTime for times known to parse.
func MustTime(s string) Time { return must(ParseTime(s)) }

// Time returns the instant (the zero time.Time when not set).
func (t Time) Time() time.Time { return t.t }

// IsZero reports whether no time is set.
func (t Time) IsZero() bool { return t.src == "" }

// String returns the time as written.
func (t Time) String() string { return t.src }

func (t Time) source() string { return t.src }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Time) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, t, "an RFC 3339 time such as 2027-01-31T00:00:00Z", ParseTime)
}

// MarshalYAML implements yaml.Marshaler.
func (t Time) MarshalYAML() (any, error) { return t.src, nil }

// TimeZone is an IANA time zone ("UTC", "Europe/Berlin"), loaded once.
// "Local" is refused: the machine's zone would make replicas disagree.
type TimeZone struct {
	name string
	loc  *time.Location
}

// LoadTimeZone loads the named zone.
func LoadTimeZone(name string) (TimeZone, error) {
	loc, err := time.LoadLocation(name)
	if err != nil || name == "" || strings.EqualFold(name, "local") {
		return TimeZone{}, fmt.Errorf("%q is not a time zone; use an IANA name such as UTC or Europe/Berlin", name)
	}
	return TimeZone{name: name, loc: loc}, nil
}

// Location returns the zone (UTC for the zero TimeZone).
func (z TimeZone) Location() *time.Location {
	if z.loc == nil {
		return time.UTC
	}
	return z.loc
}

// String returns the zone's name as written.
func (z TimeZone) String() string { return z.name }

func (z TimeZone) source() string { return z.name }

// UnmarshalYAML implements yaml.Unmarshaler.
func (z *TimeZone) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, z, "a time zone such as UTC or Europe/Berlin", LoadTimeZone)
}

// MarshalYAML implements yaml.Marshaler.
func (z TimeZone) MarshalYAML() (any, error) { return z.name, nil }

// SPIFFEID is a SPIFFE id: spiffe://<trust domain><path>, with a
// lower-case trust domain and path segments of letters, digits, '.', '_'
// and '-'.
type SPIFFEID string

// ParseSPIFFEID checks s.
func ParseSPIFFEID(s string) (SPIFFEID, error) {
	if !validSPIFFEID(s) {
		return "", fmt.Errorf("%q is not a SPIFFE id (spiffe://trust.domain/path)", s)
	}
	return SPIFFEID(s), nil
}

// String returns the id.
func (id SPIFFEID) String() string { return string(id) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (id *SPIFFEID) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, id, "a SPIFFE id (spiffe://trust.domain/path)", ParseSPIFFEID)
}

// KeyBy is what one rate limit counter is kept for: a caller (subject),
// the route, or the tier (all callers of the tier on the route share
// one), or, on a route, the key of one of its header entries. The names
// are the rate limit descriptor keys of internal/contract.
type KeyBy string

// Keys of a rate limit counter.
const (
	KeyBySubject KeyBy = contract.DescriptorSubject
	KeyByRoute   KeyBy = contract.DescriptorRoute
	KeyByTier    KeyBy = contract.DescriptorTier
)

// Builtin reports whether k is one of the keys gatehouse sets itself
// (subject, route or tier), rather than a route's header entry key.
func (k KeyBy) Builtin() bool { return k == KeyBySubject || k == KeyByRoute || k == KeyByTier }

// PerCaller reports whether each caller has a counter of its own: every
// key but route and tier, which the descriptor's route and tier entries
// already identify.
func (k KeyBy) PerCaller() bool { return k != KeyByRoute && k != KeyByTier }

// SPIFFETrustDomain is a SPIFFE trust domain ("example.org"): lower-case
// letters, digits, '.', '_' and '-'.
type SPIFFETrustDomain struct {
	td spiffeid.TrustDomain
}

// ParseSPIFFETrustDomain checks and parses s.
func ParseSPIFFETrustDomain(s string) (SPIFFETrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil || !validTrustDomain(s) {
		return SPIFFETrustDomain{}, fmt.Errorf("%q is not a SPIFFE trust domain; use lower-case letters, digits, '.', '_' and '-'", s)
	}
	return SPIFFETrustDomain{td: td}, nil
}

// MustSPIFFETrustDomain is ParseSPIFFETrustDomain for names known to parse.
func MustSPIFFETrustDomain(s string) SPIFFETrustDomain { return must(ParseSPIFFETrustDomain(s)) }

// TrustDomain returns the parsed trust domain.
func (d SPIFFETrustDomain) TrustDomain() spiffeid.TrustDomain { return d.td }

// String returns the trust domain's name ("" when not set).
func (d SPIFFETrustDomain) String() string { return d.td.Name() }

// IsZero reports whether no trust domain is set.
func (d SPIFFETrustDomain) IsZero() bool { return d.td.IsZero() }

func (d SPIFFETrustDomain) source() string { return d.td.Name() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *SPIFFETrustDomain) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, d, "a SPIFFE trust domain such as example.org", ParseSPIFFETrustDomain)
}

// MarshalYAML implements yaml.Marshaler.
func (d SPIFFETrustDomain) MarshalYAML() (any, error) { return d.td.Name(), nil }
