package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestRegexAnchoring: a config regex matches whole values, as Envoy's
// safe_regex does, in every component that reads it.
func TestRegexAnchoring(t *testing.T) {
	re := MustRegex(`/users/[0-9]+|/admin`)
	for s, want := range map[string]bool{"/users/42": true, "/admin": true, "/users/42/x": false, "x/admin": false, "": false} {
		if got := re.MatchString(s); got != want {
			t.Errorf("Regex(%q).MatchString(%q) = %t; want %t", re, s, got, want)
		}
	}
	if (Regex{}).MatchString("") {
		t.Error("the zero Regex matched")
	}
	if _, err := NewRegex("("); err == nil || !strings.Contains(err.Error(), `"(" is not a valid RE2 expression: missing closing )`) {
		t.Errorf("NewRegex(\"(\") = %v", err)
	}
	if p := MustPattern(`\d{3}`); !p.Regexp().MatchString("id 123 here") {
		t.Error("a Pattern does not search within a value")
	}
}

func TestParsedValues(t *testing.T) {
	if c := MustCIDR("10.1.2.3/8"); c.Prefix().String() != "10.0.0.0/8" || c.String() != "10.1.2.3/8" {
		t.Errorf("CIDR = %s (%s); want masked 10.0.0.0/8, written 10.1.2.3/8", c.Prefix(), c)
	}
	if tm := MustTime("2027-01-31T00:00:00Z"); tm.Time().Unix() != 1801353600 {
		t.Errorf("Time = %v", tm.Time())
	}
	for _, bad := range []string{"", "Local", "local", "Mars/Olympus"} {
		if _, err := LoadTimeZone(bad); err == nil {
			t.Errorf("LoadTimeZone(%q) = nil error", bad)
		}
	}
	if z, err := LoadTimeZone("Europe/Berlin"); err != nil || z.Location().String() != "Europe/Berlin" {
		t.Errorf("LoadTimeZone(Europe/Berlin) = %v, %v", z, err)
	}
	for s, ok := range map[string]bool{"spiffe://example.org/ns/a": true, "spiffe://example.org": true, "spiffe://Example.org/a": false, "spiffe://example.org/": false, "https://example.org/a": false} {
		if _, err := ParseSPIFFEID(s); (err == nil) != ok {
			t.Errorf("ParseSPIFFEID(%q) = %v; want ok %t", s, err, ok)
		}
	}
	if _, err := ParseSPIFFETrustDomain("Example.org"); err == nil {
		t.Error("ParseSPIFFETrustDomain(Example.org) = nil error")
	}
}

// TestTypedValuesInVersion: a typed value's text is part of the content
// hash, so that changing only a regex or a CIDR is a change to reload.
func TestTypedValuesInVersion(t *testing.T) {
	const base = "apiVersion: gatehouse/v1\nauthz: {mtls: {xfcc: {trustedProxies: [%s]}}}\nroutes:\n  - {id: r, match: {regex: %s}, authz: {public: true}}\n"
	versions := map[string]string{}
	for _, v := range [][2]string{{"10.0.0.0/8", "/a"}, {"10.0.0.0/8", "/b"}, {"10.0.0.0/16", "/a"}} {
		cfg, err := LoadBytes("<test>", []byte(fmt.Sprintf(base, v[0], v[1])), LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := versions[cfg.Version]; dup {
			t.Fatalf("%v and %s have the same version", v, other)
		}
		versions[cfg.Version] = v[0] + " " + v[1]
	}
}
