package budget

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Path is a JSON path of the form the budget config accepts: $ followed
// by .name and [index] steps ("$.usage.total_tokens", "$.choices[0].n").
type Path struct {
	steps []pathStep
	src   string
}

type pathStep struct {
	key   string
	index int // -1: a key step
}

// ParsePath reads a JSON path.
func ParsePath(s string) (Path, error) {
	if !strings.HasPrefix(s, "$") {
		return Path{}, fmt.Errorf("budget: %q is not a JSON path; start it with $, as in $.usage.total_tokens", s)
	}
	p := Path{src: s}
	rest := s[1:]
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			n := strings.IndexAny(rest, ".[")
			if n < 0 {
				n = len(rest)
			}
			if n == 0 {
				return Path{}, fmt.Errorf("budget: JSON path %q has an empty name", s)
			}
			p.steps = append(p.steps, pathStep{key: rest[:n], index: -1})
			rest = rest[n:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return Path{}, fmt.Errorf("budget: JSON path %q has an unclosed [", s)
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i > 1<<20 {
				return Path{}, fmt.Errorf("budget: JSON path %q: %q is not an array index", s, rest[1:end])
			}
			p.steps = append(p.steps, pathStep{index: i})
			rest = rest[end+1:]
		default:
			return Path{}, fmt.Errorf("budget: JSON path %q: expected . or [ at %q", s, rest)
		}
	}
	if len(p.steps) == 0 {
		return Path{}, fmt.Errorf("budget: JSON path %q selects the whole document, not a number", s)
	}
	return p, nil
}

// String returns the path as written.
func (p Path) String() string { return p.src }

// IsZero reports whether p is no path.
func (p Path) IsZero() bool { return len(p.steps) == 0 }

// Lookup reads the number at p in a JSON document: a non-negative number
// (a fraction is rounded up) of at most MaxAmount. ok is false when the
// document is not JSON, has nothing at p, or something else than such a
// number.
func (p Path) Lookup(doc []byte) (n uint64, ok bool) {
	if p.IsZero() {
		return 0, false
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return 0, false
	}
	for _, s := range p.steps {
		if s.index < 0 {
			m, isObj := v.(map[string]any)
			if !isObj {
				return 0, false
			}
			v = m[s.key]
			continue
		}
		a, isArr := v.([]any)
		if !isArr || s.index >= len(a) {
			return 0, false
		}
		v = a[s.index]
	}
	num, isNum := v.(json.Number)
	if !isNum {
		return 0, false
	}
	return ParseAmount(string(num))
}

// ParseAmount reads a cost or estimate written as a number (a header, a
// JSON number): non-negative, finite, at most MaxAmount, a fraction
// rounded up.
func ParseAmount(s string) (uint64, bool) {
	s = strings.TrimSpace(s)
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return u, u <= MaxAmount
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > MaxAmount {
		return 0, false
	}
	return uint64(math.Ceil(f)), true
}

// maxSSELine bounds one line of an event stream held while it arrives in
// pieces; a longer line (no usage event is that long) is skipped.
const maxSSELine = 1 << 20

// SSE reads the cost out of a text/event-stream as it passes, chunk by
// chunk: the number at Path in the data of the last event that has one
// (OpenAI-style streams send usage in their last data event, before
// "data: [DONE]"). It holds at most one line and one event's data.
type SSE struct {
	path  Path
	line  []byte
	data  []byte
	skip  bool // the current line is over maxSSELine: drop it
	cr    bool // the last chunk ended in \r: a \n first in the next ends the same line
	cost  uint64
	found bool
}

// NewSSE makes a scanner for path.
func NewSSE(path Path) *SSE { return &SSE{path: path} }

// Write takes the next chunk of the stream.
func (s *SSE) Write(chunk []byte) {
	if len(chunk) == 0 {
		return
	}
	if s.cr && chunk[0] == '\n' {
		chunk = chunk[1:]
	}
	s.cr = false
	for len(chunk) > 0 {
		i := bytes.IndexAny(chunk, "\r\n")
		if i < 0 {
			s.append(chunk)
			return
		}
		s.append(chunk[:i])
		s.endLine()
		// \r\n counts as one line end; a lone \r or \n as one too.
		if chunk[i] == '\r' {
			if i+1 == len(chunk) {
				s.cr = true
			} else if chunk[i+1] == '\n' {
				i++
			}
		}
		chunk = chunk[i+1:]
	}
}

func (s *SSE) append(b []byte) {
	if s.skip {
		return
	}
	if len(s.line)+len(b) > maxSSELine {
		s.skip, s.line = true, s.line[:0]
		return
	}
	s.line = append(s.line, b...)
}

// endLine handles one complete line (the event stream format of the
// HTML standard: "data:" lines accumulate, a blank line ends an event).
func (s *SSE) endLine() {
	line := s.line
	s.line = s.line[:0]
	if s.skip {
		s.skip = false
		return
	}
	if len(line) == 0 {
		s.dispatch()
		return
	}
	field, value, _ := bytes.Cut(line, []byte(":"))
	if string(field) != "data" {
		return
	}
	value = bytes.TrimPrefix(value, []byte(" "))
	if len(s.data) > 0 {
		s.data = append(s.data, '\n')
	}
	if len(s.data)+len(value) > maxSSELine {
		s.data = s.data[:0]
		return
	}
	s.data = append(s.data, value...)
}

func (s *SSE) dispatch() {
	if len(s.data) == 0 {
		return
	}
	if n, ok := s.path.Lookup(s.data); ok {
		s.cost, s.found = n, true
	}
	s.data = s.data[:0]
}

// End ends the stream: an event not followed by a blank line still
// counts.
func (s *SSE) End() {
	if len(s.line) > 0 {
		s.endLine()
	}
	s.dispatch()
}

// Cost is the last cost seen, and whether any was.
func (s *SSE) Cost() (uint64, bool) { return s.cost, s.found }
