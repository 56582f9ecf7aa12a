package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFilterMatch(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	e := Event{Time: at, Kind: KindDecision, ID: "d-1", RequestID: "r-1", Route: "orders", Decision: "deny", Reason: "jwt_expired", Subject: "spiffe://td/ns/prod/sa/web"}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"since before", Filter{Since: at.Add(-time.Second)}, true},
		{"since equal", Filter{Since: at}, true},
		{"since after", Filter{Since: at.Add(time.Second)}, false},
		{"until after", Filter{Until: at.Add(time.Second)}, true},
		{"until equal", Filter{Until: at}, false},
		{"kind", Filter{Kinds: []string{"authz.decision"}}, true},
		{"other kind", Filter{Kinds: []string{"xds.nack"}}, false},
		{"any of decisions", Filter{Decisions: []string{"allow", "deny"}}, true},
		{"reason", Filter{Reasons: []string{"jwt_*"}}, true},
		{"subject wildcard across slashes", Filter{Subjects: []string{"spiffe://td/*/web"}}, true},
		{"subject wildcard miss", Filter{Subjects: []string{"spiffe://other/*"}}, false},
		{"route and id", Filter{Routes: []string{"orders"}, IDs: []string{"d-1"}}, true},
		{"route but not id", Filter{Routes: []string{"orders"}, IDs: []string{"d-2"}}, false},
		{"request id", Filter{RequestIDs: []string{"r-1"}}, true},
		{"empty field does not match a value", Filter{Subjects: []string{"x"}}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Match(&e); got != tt.want {
			t.Errorf("%s: Match = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestWildcard(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"abc", "abc", true}, {"abc", "abcd", false}, {"*", "", true}, {"*", "x/y", true},
		{"a*", "abc", true}, {"*c", "abc", true}, {"a*c", "ac", true}, {"a*c", "abcbc", true},
		{"a*b*c", "axbyc", true}, {"a*b*c", "axcyb", false}, {"ab*ba", "aba", false}, {"**", "z", true},
	}
	for _, tt := range tests {
		if got := wildcard(tt.p, tt.s); got != tt.want {
			t.Errorf("wildcard(%q, %q) = %v; want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestScan(t *testing.T) {
	b := logBytes(t, 20, nil)
	b = append(b, "garbage\n"...)
	b = append(b, logBytes(t, 5, nil)...)
	b = append(b, `{"seq":1`...) // torn tail
	var ids []string
	var bad []string
	f := Filter{Subjects: []string{"user-3"}}
	err := Scan([]Source{memSource("a.log", b)}, func(raw []byte, l *Line) error {
		if !strings.HasSuffix(string(raw), `"}`) {
			t.Errorf("raw line %q is not the whole line", raw)
		}
		if f.Match(&l.Event) {
			ids = append(ids, l.ID)
		}
		return nil
	}, func(p Pos, err error) { bad = append(bad, p.String()+" "+err.Error()) })
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(ids, ","), "d-3,d-10,d-17,d-3"; got != want {
		t.Errorf("matched %s; want %s", got, want)
	}
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "a.log:23 ") || !strings.Contains(bad[1], "incomplete") {
		t.Errorf("bad lines %q; want a.log:23 and the incomplete last line", bad)
	}
	stop := errors.New("stop")
	n := 0
	if err := Scan([]Source{memSource("a.log", b)}, func([]byte, *Line) error { n++; return stop }, func(Pos, error) {}); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Scan with a failing callback = %v after %d lines; want stop after 1", err, n)
	}
}
