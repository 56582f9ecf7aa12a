package budget

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/gatehouse/gatehouse/internal/jsonpath"
)

// Lookup reads the cost at p in a JSON document: a non-negative number
// (a fraction is rounded up) of at most MaxAmount. ok is false when the
// document is not JSON, has nothing at p, or something else than such a
// number.
func Lookup(p jsonpath.Path, doc []byte) (uint64, bool) {
	v, ok := p.Lookup(doc)
	if !ok {
		return 0, false
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
	path  jsonpath.Path
	line  []byte
	data  []byte
	skip  bool // the current line is over maxSSELine: drop it
	cr    bool // the last chunk ended in \r: a \n first in the next ends the same line
	cost  uint64
	found bool
}

// NewSSE makes a scanner for path.
func NewSSE(path jsonpath.Path) *SSE { return &SSE{path: path} }

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
	if n, ok := Lookup(s.path, s.data); ok {
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
