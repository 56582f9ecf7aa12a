package timeunit

import (
	"slices"
	"testing"
)

func TestTable(t *testing.T) {
	tests := []struct {
		u       Unit
		name    string
		abbrev  string
		seconds int64
	}{
		{Second, "second", "s", 1},
		{Minute, "minute", "m", 60},
		{Hour, "hour", "h", 3600},
		{Day, "day", "d", 86400},
		{Week, "week", "w", 604800},
		{Month, "month", "mo", 2592000},
		{Year, "year", "y", 31536000},
		{0, "unknown", "?", 0},
		{Year + 1, "unknown", "?", 0},
	}
	for _, tt := range tests {
		if tt.u.String() != tt.name || tt.u.Abbrev() != tt.abbrev || tt.u.Seconds() != tt.seconds {
			t.Errorf("Unit(%d) = %s, %s, %d; want %s, %s, %d", tt.u, tt.u, tt.u.Abbrev(), tt.u.Seconds(), tt.name, tt.abbrev, tt.seconds)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		foldCase bool
		want     Unit
		ok       bool
	}{
		{"minute", false, Minute, true},
		{"MINUTE", false, 0, false},
		{"MINUTE", true, Minute, true},
		{"Year", true, Year, true},
		{"fortnight", true, 0, false},
		{"", true, 0, false},
	}
	for _, tt := range tests {
		if got, ok := Parse(tt.in, tt.foldCase); got != tt.want || ok != tt.ok {
			t.Errorf("Parse(%q, %t) = %v, %t; want %v, %t", tt.in, tt.foldCase, got, ok, tt.want, tt.ok)
		}
	}
	if got, want := Names(Second, Month), []string{"second", "minute", "hour", "day", "week", "month"}; !slices.Equal(got, want) {
		t.Errorf("Names(Second, Month) = %v; want %v", got, want)
	}
}
