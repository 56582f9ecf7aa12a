// Package redact masks secrets and personal data in JSON bodies before
// they leave the mesh: values at configured JSONPaths, and e-mail
// addresses, payment card numbers, national id numbers and bearer tokens
// wherever they occur in a string.
//
// It is a hand-written single-pass scanner rather than encoding/json:
// decoding a 64 KiB body into interface values and encoding it again costs
// several times the 100 MB/s per core budget, while a scan that copies
// untouched bytes through (and allocates nothing for a body without
// secrets) stays well inside it. Nesting is tracked on a heap stack, so
// depth is bounded only by the body size limit, never by the goroutine
// stack, and a deeply nested body cannot hide a secret.
package redact

import (
	"errors"
	"regexp"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

// ErrNotJSON is returned (with the body unchanged) for a body that is not
// one valid JSON text.
var ErrNotJSON = errors.New("redact: body is not valid JSON")

// Options configure a Redactor.
type Options struct {
	// Paths are JSONPath expressions whose values are replaced by Mask.
	Paths []string
	// Mask replaces path-selected values (as a JSON string).
	Mask string
	// Built-in detectors, applied to every string (and to numbers, for
	// cards).
	Email, Cards, NationalIDs, BearerTokens bool
	// NationalIDPatterns are further patterns masked in strings
	// (compiled by config, unanchored).
	NationalIDPatterns []*regexp.Regexp
}

// Redactor masks bodies. It is immutable and safe for concurrent use.
type Redactor struct {
	m       matcher
	mask    []byte // Mask as a JSON string, quotes included
	det     detectors
	scratch sync.Pool
}

// New compiles o.
func New(o Options) (*Redactor, error) {
	r := &Redactor{det: detectors{email: o.Email, cards: o.Cards, nationalIDs: o.NationalIDs, bearer: o.BearerTokens}}
	for _, p := range o.Paths {
		segs, err := compilePath(p)
		if err != nil {
			return nil, err
		}
		r.m.paths = append(r.m.paths, segs)
	}
	r.det.patterns = append(r.det.patterns, o.NationalIDPatterns...)
	mask := o.Mask
	if mask == "" {
		mask = "[REDACTED]"
	}
	r.mask = jsonx.AppendString(nil, mask)
	r.scratch.New = func() any { return new(scanner) }
	return r, nil
}

// Redact returns body with what r selects masked, and what it masked. The
// result is body itself (not a copy) when nothing was masked. A body that
// is not valid JSON comes back unchanged with ErrNotJSON.
func (r *Redactor) Redact(body []byte) ([]byte, Counts, error) {
	s := r.scratch.Get().(*scanner)
	s.reset(r, body)
	err := s.run()
	out, counts := s.out, s.counts
	if err == nil && out != nil {
		out = append(out, body[s.last:]...)
	}
	s.release()
	r.scratch.Put(s)
	if err != nil {
		return body, Counts{}, err
	}
	if out == nil {
		return body, counts, nil
	}
	return out, counts, nil
}

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
}

func (s *scanner) reset(r *Redactor, in []byte) {
	s.r, s.in, s.pos, s.out, s.last, s.counts = r, in, 0, nil, 0, Counts{}
	s.stack, s.states, s.spans = s.stack[:0], s.states[:0], s.spans[:0]
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
				if s.pos != len(s.in) {
					return errSyntax
				}
				return nil
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

// stringValue scans the string at s.pos, masking what the detectors find.
// For a key with paths configured, the decoded key is kept in s.key.
func (s *scanner) stringValue(isKey bool) error {
	start := s.pos
	i := start + 1
	in := s.in
	var f uint8
	for i < len(in) {
		c := cls[in[i]]
		if c&clsStop != 0 {
			break
		}
		f |= c
		i++
	}
	if i >= len(in) {
		return errSyntax
	}
	needKey := isKey && len(s.r.m.paths) > 0
	if in[i] == '"' { // no escapes: the raw bytes are the value
		s.pos = i + 1
		raw := in[start+1 : i]
		if needKey {
			s.key = append(s.key[:0], raw...)
		}
		if s.r.det.interesting(f, len(raw)) {
			s.detect(start, s.pos, raw, f)
		}
		return nil
	}
	if in[i] != '\\' {
		return errSyntax // a control character
	}
	// Escapes: decode, then detect on what a client would read.
	dec := append(s.str[:0], in[start+1:i]...)
	var err error
	dec, i, err = unescape(dec, in, i)
	s.str = dec
	if err != nil {
		return err
	}
	s.pos = i
	if needKey {
		s.key = append(s.key[:0], dec...)
	}
	if s.r.det.any() {
		s.detect(start, s.pos, dec, flagsOf(dec))
	}
	return nil
}

// unescape decodes the rest of a string from in[i] (a backslash) up to and
// including its closing quote, appending to dst; it returns the position
// after the quote.
func unescape(dst, in []byte, i int) ([]byte, int, error) {
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"':
			return dst, i + 1, nil
		case c < 0x20:
			return dst, i, errSyntax
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(in) {
			return dst, i, errSyntax
		}
		e := in[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(in, i)
			if !ok {
				return dst, i, errSyntax
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := hex4(in, i+2); ok && i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						dst = utf8.AppendRune(dst, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, i, errSyntax
		}
	}
	return dst, i, errSyntax
}

func hex4(in []byte, i int) (rune, bool) {
	if i+4 > len(in) {
		return 0, false
	}
	var r rune
	for _, c := range in[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			c = c | 0x20 - 'a' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// maxPasses bounds re-detection of a string after masking. Masks are
// never detected again, so one pass is the rule; the bound only guards
// against a detector combination nobody foresaw, after which the whole
// string is replaced.
const maxPasses = 3

// detect masks the secrets of the decoded string val written as
// in[start:end] (quotes included).
func (s *scanner) detect(start, end int, val []byte, f uint8) {
	s.spans = s.r.det.find(val, s.spans, f)
	if len(s.spans) == 0 {
		return
	}
	cur := val
	for pass := 0; ; pass++ {
		for _, sp := range s.spans {
			s.counts[sp.kind]++
		}
		// Ping-pong between two scratch buffers; val may alias the
		// input and is never written.
		next := &s.bufA
		if pass%2 == 1 {
			next = &s.bufB
		}
		*next = apply((*next)[:0], cur, s.spans)
		cur = *next
		s.spans = s.r.det.find(cur, s.spans, flagsOf(cur))
		if len(s.spans) == 0 {
			break
		}
		if pass+1 == maxPasses {
			cur = maskToken
			break
		}
	}
	s.enc = jsonx.AppendBytes(s.enc[:0], cur)
	s.replace(start, end, s.enc)
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
				if _, ok := hex4(in, i+2); !ok {
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
