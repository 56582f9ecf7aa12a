// Package timeunit is the one table of the time units rate limit windows
// are counted in: their names in config (gatehouse's and, in any case,
// envoyproxy/ratelimit's), their short forms in counter keys and limit
// names, and their nominal lengths. config validates windows with it,
// ratelimit/algo does window arithmetic with it, and ratelimit/quota names
// limits and keys with it.
package timeunit

import "strings"

// Unit is a window unit. The zero Unit is no unit.
type Unit uint8

// Units. A Month (not calendar-aligned) is 30 days and a Year 365 days, as
// in envoyproxy/ratelimit.
const (
	Second Unit = iota + 1
	Minute
	Hour
	Day
	Week
	Month
	Year
)

var table = [...]struct {
	name, abbrev string
	seconds      int64
}{
	Second: {"second", "s", 1},
	Minute: {"minute", "m", 60},
	Hour:   {"hour", "h", 3600},
	Day:    {"day", "d", 86400},
	Week:   {"week", "w", 7 * 86400},
	Month:  {"month", "mo", 30 * 86400},
	Year:   {"year", "y", 365 * 86400},
}

// Valid reports whether u is one of the units.
func (u Unit) Valid() bool { return u >= Second && u <= Year }

// String returns the unit's config name ("minute"), or "unknown".
func (u Unit) String() string {
	if !u.Valid() {
		return "unknown"
	}
	return table[u].name
}

// Abbrev is the unit's short form in counter keys and generated limit
// names ("m", "mo"), or "?".
func (u Unit) Abbrev() string {
	if !u.Valid() {
		return "?"
	}
	return table[u].abbrev
}

// Seconds is the nominal length of one unit, or 0.
func (u Unit) Seconds() int64 {
	if !u.Valid() {
		return 0
	}
	return table[u].seconds
}

// Parse reads a unit name. foldCase accepts any case, as
// envoyproxy/ratelimit's config loader does ("SECOND", "Minute");
// gatehouse's own config writes names in lower case.
func Parse(s string, foldCase bool) (Unit, bool) {
	for u := Second; u <= Year; u++ {
		if s == table[u].name || foldCase && strings.EqualFold(s, table[u].name) {
			return u, true
		}
	}
	return 0, false
}

// Names lists the names of the units from first to last, inclusive.
func Names(first, last Unit) []string {
	var out []string
	for u := first; u <= last && u.Valid(); u++ {
		out = append(out, table[u].name)
	}
	return out
}
