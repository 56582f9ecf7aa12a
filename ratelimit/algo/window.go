// Package algo holds the rate limit algorithms as pure functions of a
// stored state, the current time and a request's hits: fixed window,
// sliding window and GCRA (a token bucket with an explicit burst).
//
// The Redis store runs the same decisions in a Lua script and the
// in-process store calls these functions directly, so both stores answer
// alike; the store tests hold the script to these functions on a real
// redis-server. Times are Unix microseconds: every count and time stays
// below 2^53, exact in Lua's double-precision numbers.
package algo

import (
	"time"

	"github.com/gatehouse/gatehouse/internal/timeunit"
)

// Unit is a window unit, from the one table of units (internal/timeunit).
// Month (non-calendar) is 30 days and Year 365 days, as in
// envoyproxy/ratelimit.
type Unit = timeunit.Unit

// Window units.
const (
	Second = timeunit.Second
	Minute = timeunit.Minute
	Hour   = timeunit.Hour
	Day    = timeunit.Day
	Week   = timeunit.Week
	Month  = timeunit.Month
	Year   = timeunit.Year
)

// Window is Count units long. A calendar window (days, weeks starting on
// Monday, months) starts at midnight in Loc; any other window starts at a
// multiple of its length since the Unix epoch, as envoyproxy/ratelimit's.
type Window struct {
	Count    int64
	Unit     Unit
	Calendar bool
	Loc      *time.Location
}

// Nominal is the window's length in microseconds (for a calendar window,
// the length of a 30-day month or a 24-hour day).
func (w Window) Nominal() int64 { return w.Count * w.Unit.Seconds() * 1e6 }

// Bounds returns the window holding now: [start, end) in Unix
// microseconds.
func (w Window) Bounds(now int64) (start, end int64) {
	if !w.Calendar || w.Unit < Day || w.Unit > Month {
		l := w.Nominal()
		start = now - mod(now, l)
		return start, start + l
	}
	loc := w.Loc
	if loc == nil {
		loc = time.UTC
	}
	t := time.UnixMicro(now).In(loc)
	y, m, d := t.Date()
	var s, e time.Time
	switch w.Unit {
	case Day:
		dn := civilDay(y, m, d)
		i := dn - mod(dn, w.Count)
		s = time.Date(1970, 1, 1+int(i), 0, 0, 0, 0, loc)
		e = time.Date(1970, 1, 1+int(i+w.Count), 0, 0, 0, 0, loc)
	case Week:
		// 1970-01-05 (civil day 4) was a Monday.
		wk := floorDiv(civilDay(y, m, d)-4, 7)
		i := wk - mod(wk, w.Count)
		s = time.Date(1970, 1, 5+int(i*7), 0, 0, 0, 0, loc)
		e = time.Date(1970, 1, 5+int((i+w.Count)*7), 0, 0, 0, 0, loc)
	case Month:
		mi := int64(y-1970)*12 + int64(m-1)
		i := mi - mod(mi, w.Count)
		s = time.Date(1970, time.Month(1+i), 1, 0, 0, 0, 0, loc)
		e = time.Date(1970, time.Month(1+i+w.Count), 1, 0, 0, 0, 0, loc)
	}
	return s.UnixMicro(), e.UnixMicro()
}

// civilDay counts days from 1970-01-01 to the given date.
func civilDay(y int, m time.Month, d int) int64 {
	return floorDiv(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix(), 86400)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func mod(a, b int64) int64 { return a - floorDiv(a, b)*b }
