package redact

import (
	"strconv"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// frame is one open object or array.
type frame struct {
	obj    bool
	idx    int // next element index (arrays)
	states int // start of this container's live path states in scanner.states
	nstate int
}

// scanner is the state of one Redact call, pooled so that a body without
// secrets allocates nothing.
type scanner struct {
	r      *Redactor
	in     []byte
	pos    int
	out    []byte // nil until the first change
	last   int    // in[last:] is not yet copied to out
	counts Counts
	stack  []frame
	states []state
	key    []byte // decoded current key, when paths need it
	str    []byte // decoded string scratch
	bufA   []byte // masked string scratch
	bufB   []byte
	enc    []byte // encoded replacement scratch
	spans  []span
	// names finds duplicate member names, unless they are allowed.
	names  jsonx.Names
	dupChk bool
	// textDone: the first JSON text was read whole; whatever breaks after
	// it is trailing data, not a body that is not JSON.
	textDone bool
}

func (s *scanner) reset(r *Redactor, in []byte) {
	s.r, s.in, s.pos, s.out, s.last, s.counts = r, in, 0, nil, 0, Counts{}
	s.stack, s.states, s.spans = s.stack[:0], s.states[:0], s.spans[:0]
	s.dupChk, s.textDone = !r.json.AllowDuplicateNames, false
	if s.dupChk {
		s.names.Reset()
	}
}

// release drops references to the caller's memory; oversized scratch
// buffers are not kept in the pool.
func (s *scanner) release() {
	s.r, s.in, s.out = nil, nil, nil
	if cap(s.stack) > 4096 {
		s.stack = nil
	}
	if cap(s.states) > 4096 {
		s.states = nil
	}
	if cap(s.str) > 64<<10 || cap(s.bufA) > 64<<10 || cap(s.bufB) > 64<<10 || cap(s.enc) > 64<<10 {
		s.str, s.bufA, s.bufB, s.enc = nil, nil, nil, nil
	}
	if cap(s.key) > 4096 {
		s.key = nil
	}
	s.names.Reset()
}

var errSyntax = ErrNotJSON

// bom is the UTF-8 byte order mark.
const bom = "\xef\xbb\xbf"

// replace substitutes in[start:end] with repl in the output.
func (s *scanner) replace(start, end int, repl []byte) {
	if s.out == nil {
		s.out = make([]byte, 0, len(s.in)+len(s.in)/8+64)
	}
	s.out = append(s.out, s.in[s.last:start]...)
	s.out = append(s.out, repl...)
	s.last = end
}

func (s *scanner) skipWS() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// run scans one JSON text. Each value is preceded by a decision whether a
// path selects it (then it is validated and replaced whole) and its child
// path states are pushed with it when it is a container.
func (s *scanner) run() error {
	paths := len(s.r.m.paths) > 0
	if paths {
		s.states = s.r.m.root(s.states)
	}
	// childStates/childSelected describe the value about to be read.
	childStart, childN, selected := 0, len(s.states), false

	// RFC 8259 forbids a byte order mark but lets parsers ignore one, and
	// clients do (fetch's json(), Python requests): a body that starts with
	// one is JSON to them, so it must be scanned, not passed as not JSON.
	// The mark itself is copied through.
	if len(s.in) >= len(bom) && string(s.in[:len(bom)]) == bom {
		s.pos = len(bom)
	}
	s.skipWS()
	for {
		// A value.
		if s.pos >= len(s.in) {
			return errSyntax
		}
		start := s.pos
		if selected {
			if err := s.skipValue(); err != nil {
				return err
			}
			s.replace(start, s.pos, s.r.mask)
			s.counts[KindPath]++
		} else {
			switch c := s.in[s.pos]; {
			case c == '{' || c == '[':
				s.pos++
				s.stack = append(s.stack, frame{obj: c == '{', states: childStart, nstate: childN})
				if c == '{' && s.dupChk {
					s.names.Open()
				}
				s.skipWS()
				if s.pos < len(s.in) && (s.in[s.pos] == '}' || s.in[s.pos] == ']') {
					if (s.in[s.pos] == '}') != (c == '{') {
						return errSyntax
					}
					s.pos++
					s.pop()
					break
				}
				var err error
				if childStart, childN, selected, err = s.enterChild(); err != nil {
					return err
				}
				continue
			case c == '"':
				if err := s.stringValue(false); err != nil {
					return err
				}
			case c == '-' || isDigit(c):
				if err := s.number(true); err != nil {
					return err
				}
			default:
				if err := s.literal(); err != nil {
					return err
				}
			}
		}
		// After a value: close containers or move to the next element.
		for {
			s.skipWS()
			if len(s.stack) == 0 {
				s.textDone = true
				if s.pos == len(s.in) {
					return nil
				}
				if !s.r.json.AllowTrailingData {
					return jsonx.ErrTrailingData
				}
				// Another text of a sequence: the paths apply to it
				// from its root, as to the first.
				if paths {
					s.states = s.r.m.root(s.states[:0])
				}
				childStart, childN, selected = 0, len(s.states), false
				break
			}
			if s.pos >= len(s.in) {
				return errSyntax
			}
			top := &s.stack[len(s.stack)-1]
			c := s.in[s.pos]
			s.pos++
			switch {
			case c == ',':
				s.skipWS()
				top.idx++
				var err error
				if childStart, childN, selected, err = s.enterChild(); err != nil {
					return err
				}
			case c == '}' && top.obj, c == ']' && !top.obj:
				s.pop()
				continue
			default:
				return errSyntax
			}
			break
		}
	}
}

// pop closes the innermost container and drops its child states.
func (s *scanner) pop() {
	f := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	if f.obj && s.dupChk {
		s.names.Close()
	}
	if f.nstate > 0 || len(s.states) > f.states+f.nstate {
		s.states = s.states[:f.states+f.nstate]
	}
}

// enterChild reads what precedes the next child of the innermost
// container (a key and ':' in an object) and computes the child's path
// states, placed after the container's own.
func (s *scanner) enterChild() (start, n int, selected bool, err error) {
	top := &s.stack[len(s.stack)-1]
	if top.obj {
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			return 0, 0, false, errSyntax
		}
		if err := s.stringValue(true); err != nil {
			return 0, 0, false, err
		}
		if s.dupChk && s.names.Add(s.key) {
			return 0, 0, false, jsonx.ErrDuplicateName
		}
		s.skipWS()
		if s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return 0, 0, false, errSyntax
		}
		s.pos++
		s.skipWS()
	}
	// Drop the states of the previous sibling.
	base := top.states + top.nstate
	s.states = s.states[:base]
	if top.nstate == 0 {
		return base, 0, false, nil
	}
	parent := s.states[top.states:base]
	s.states, selected = s.r.m.step(s.states, parent, s.key, top.idx, !top.obj)
	return base, len(s.states) - base, selected, nil
}

// number scans a JSON number; a bare 13-19 digit integer that passes Luhn
// is a card number and becomes a masked string.
func (s *scanner) number(mask bool) error {
	in, i := s.in, s.pos
	start := i
	if in[i] == '-' {
		i++
	}
	if i >= len(in) {
		return errSyntax
	}
	switch {
	case in[i] == '0':
		i++
	case isDigit(in[i]):
		for i < len(in) && isDigit(in[i]) {
			i++
		}
	default:
		return errSyntax
	}
	intEnd := i
	if i < len(in) && in[i] == '.' {
		i++
		if i >= len(in) || !isDigit(in[i]) {
			return errSyntax
		}
		for i < len(in) && isDigit(in[i]) {
			i++
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if i >= len(in) || !isDigit(in[i]) {
			return errSyntax
		}
		for i < len(in) && isDigit(in[i]) {
			i++
		}
	}
	s.pos = i
	if mask && s.r.det.cards && intEnd == i && in[start] != '-' && isCardNumber(in[start:i]) {
		masked := maskCard(make([]byte, 0, 24), in[start:i])
		s.replace(start, i, strconv.AppendQuote(make([]byte, 0, 26), string(masked)))
		s.counts[KindCard]++
	}
	return nil
}

func (s *scanner) literal() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.in)-s.pos >= len(lit) && string(s.in[s.pos:s.pos+len(lit)]) == lit {
			s.pos += len(lit)
			return nil
		}
	}
	return errSyntax
}

// skipValue validates and skips the value at s.pos (a selected one, which
// is replaced whole, so nothing in it is detected). It keeps its own
// depth counter instead of recursing.
func (s *scanner) skipValue() error {
	depth := 0
	var kinds []bool // true = object, for matching closers
	for {
		s.skipWS()
		if s.pos >= len(s.in) {
			return errSyntax
		}
		c := s.in[s.pos]
		switch {
		case c == '{' || c == '[':
			s.pos++
			kinds = append(kinds, c == '{')
			depth++
			s.skipWS()
			if s.pos < len(s.in) && (s.in[s.pos] == '}' || s.in[s.pos] == ']') {
				if (s.in[s.pos] == '}') != (c == '{') {
					return errSyntax
				}
				s.pos++
				depth--
				kinds = kinds[:depth]
				break
			}
			if c == '{' {
				if err := s.skipKey(); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			if err := s.skipString(); err != nil {
				return err
			}
		case c == '-' || isDigit(c):
			// the whole value is masked; a card inside needs no own mask
			if err := s.number(false); err != nil {
				return err
			}
		default:
			if err := s.literal(); err != nil {
				return err
			}
		}
		// after a value inside the skipped one
		for {
			if depth == 0 {
				return nil
			}
			s.skipWS()
			if s.pos >= len(s.in) {
				return errSyntax
			}
			c := s.in[s.pos]
			s.pos++
			obj := kinds[depth-1]
			switch {
			case c == ',':
				if obj {
					s.skipWS()
					if err := s.skipKey(); err != nil {
						return err
					}
				}
			case c == '}' && obj, c == ']' && !obj:
				depth--
				kinds = kinds[:depth]
				continue
			default:
				return errSyntax
			}
			break
		}
	}
}

func (s *scanner) skipKey() error {
	if s.pos >= len(s.in) || s.in[s.pos] != '"' {
		return errSyntax
	}
	if err := s.skipString(); err != nil {
		return err
	}
	s.skipWS()
	if s.pos >= len(s.in) || s.in[s.pos] != ':' {
		return errSyntax
	}
	s.pos++
	return nil
}

// skipString validates the string at s.pos without decoding it.
func (s *scanner) skipString() error {
	in, i := s.in, s.pos+1
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return nil
		case c < 0x20:
			return errSyntax
		case c == '\\':
			if i+1 >= len(in) {
				return errSyntax
			}
			switch in[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := jsonx.Hex4(in, i+2); !ok {
					return errSyntax
				}
				i += 6
			default:
				return errSyntax
			}
		default:
			i++
		}
	}
	return errSyntax
}
