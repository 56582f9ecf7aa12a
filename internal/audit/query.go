package audit

import (
	"errors"
	"io"
	"strings"
	"time"
)

// Filter selects lines for `gatehouse audit query`. Empty fields match
// everything; a field with several values matches any of them (a value
// may hold '*' wildcards); all fields must match.
type Filter struct {
	// Since and Until bound the event time: Since <= time < Until.
	Since, Until time.Time
	Kinds        []string
	Subjects     []string
	Routes       []string
	Decisions    []string
	Reasons      []string
	IDs          []string
	RequestIDs   []string
}

// Match reports whether e passes f.
func (f *Filter) Match(e *Event) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.Time.Before(f.Until) {
		return false
	}
	return anyMatch(f.Kinds, string(e.Kind)) &&
		anyMatch(f.Subjects, e.Subject) &&
		anyMatch(f.Routes, e.Route) &&
		anyMatch(f.Decisions, e.Decision) &&
		anyMatch(f.Reasons, e.Reason) &&
		anyMatch(f.IDs, e.ID) &&
		anyMatch(f.RequestIDs, e.RequestID)
}

func anyMatch(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if wildcard(p, s) {
			return true
		}
	}
	return false
}

// wildcard matches s against p, where '*' stands for any run of bytes
// (including '/', which a SPIFFE id or a path holds).
func wildcard(p, s string) bool {
	if !strings.Contains(p, "*") {
		return p == s
	}
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// Scan reads srcs in order, line by line with bounded memory, and calls
// fn with each line's raw bytes (without newline, valid only during the
// call) and its parsed form. A line that is not an audit line goes to bad
// and is skipped; Scan does not check hashes (that is Verify's job). It
// stops at fn's first error.
func Scan(srcs []Source, fn func(raw []byte, l *Line) error, bad func(Pos, error)) error {
	it := &lines{srcs: srcs}
	defer it.close()
	for {
		pl, pos, err := it.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if pl.b == nil {
			bad(pos, errors.New("not an audit line: too long"))
			continue
		}
		l, err := ParseLine(pl.b)
		if err != nil {
			if !pl.nl {
				err = errors.New("incomplete line (no newline at its end)")
			}
			bad(pos, err)
			continue
		}
		if err := fn(pl.b, l); err != nil {
			return err
		}
	}
}
