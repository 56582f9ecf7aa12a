package jsonx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Rules are the departures from strict JSON a reader tolerates. The zero
// value tolerates none: one JSON text (RFC 8259 §2) and no object naming
// a member twice (I-JSON, RFC 7493 §2.3). Both exist because readers
// disagree on them: a validator that reads the first of two texts, or the
// last of two same-named members, passes a body that the upstream, keeping
// the first member or reading on, understands otherwise.
type Rules struct {
	// AllowTrailingData accepts data after the first JSON text.
	AllowTrailingData bool
	// AllowDuplicateNames accepts objects that name a member twice.
	AllowDuplicateNames bool
	// AllowInvalidUTF8 accepts strings holding bytes that are not UTF-8
	// (RFC 8259 §8.1, I-JSON §2.1 require UTF-8). Go's encoding/json, and
	// so the validator, reads each such byte as U+FFFD: it would check a
	// string the upstream, reading the bytes, never sees.
	AllowInvalidUTF8 bool
}

// The strictness errors, for errors.Is.
var (
	// ErrTrailingData: something other than white space follows the
	// JSON text.
	ErrTrailingData = errors.New("data after the JSON text")
	// ErrDuplicateName: an object names a member twice.
	ErrDuplicateName = errors.New("an object names a member twice")
	// ErrInvalidUTF8: a string holds bytes that are not UTF-8.
	ErrInvalidUTF8 = errors.New("a string is not valid UTF-8")
	// ErrSyntax: the body is not JSON at all.
	ErrSyntax = errors.New("not valid JSON")
)

// StrictError says where a text breaks the rules. Its message names the
// rule and the place, never a value.
type StrictError struct {
	// Err is ErrTrailingData, ErrDuplicateName, ErrInvalidUTF8 or
	// ErrSyntax.
	Err error
	// Offset is the byte offset of the trailing data, the duplicate
	// name, or the syntax error.
	Offset int
	// Pointer is the JSON pointer (RFC 6901) of the duplicated member.
	Pointer string
}

func (e *StrictError) Error() string {
	switch {
	case errors.Is(e.Err, ErrDuplicateName):
		return fmt.Sprintf("member %s is named twice in its object (RFC 7493 §2.3 forbids duplicate names)", e.Pointer)
	case errors.Is(e.Err, ErrTrailingData):
		return fmt.Sprintf("data after the JSON text at byte %d (RFC 8259 §2: a body is one JSON text)", e.Offset)
	case errors.Is(e.Err, ErrInvalidUTF8):
		return fmt.Sprintf("the string at byte %d is not valid UTF-8 (RFC 8259 §8.1)", e.Offset)
	}
	return fmt.Sprintf("not valid JSON at byte %d", e.Offset)
}

// Unwrap returns the rule broken.
func (e *StrictError) Unwrap() error { return e.Err }

// Check reads b as one JSON text under rules and returns nil or a
// *StrictError. With AllowTrailingData it stops after the first text, as
// a streaming decoder does. It never recurses: depth costs heap, bounded
// by len(b).
func Check(b []byte, rules Rules) error {
	c := checkers.Get().(*checker)
	c.in, c.pos, c.rules, c.stack = b, 0, rules, c.stack[:0]
	c.names.Reset()
	err := c.run()
	c.in = nil
	if cap(c.stack) > 4096 {
		c.stack = nil
	}
	if cap(c.key) > 4096 {
		c.key = nil
	}
	checkers.Put(c)
	return err
}

// checkers keeps scratch between checks: a body without duplicates then
// allocates nothing.
var checkers = sync.Pool{New: func() any { return new(checker) }}

type checker struct {
	in    []byte
	pos   int
	rules Rules
	// stack: one entry per open container; for objects, the offset of
	// the current member's name (for the pointer), for arrays the index.
	stack []checkFrame
	names Names
	key   []byte
}

type checkFrame struct {
	obj     bool
	idx     int
	nameOff int
}

func (c *checker) fail(err error, off int) error {
	e := &StrictError{Err: err, Offset: off}
	if errors.Is(err, ErrDuplicateName) {
		e.Pointer = c.pointer()
	}
	return e
}

func (c *checker) ws() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *checker) run() error {
	c.ws()
	for {
		// A value.
		if c.pos >= len(c.in) {
			return c.fail(ErrSyntax, c.pos)
		}
		switch ch := c.in[c.pos]; {
		case ch == '{' || ch == '[':
			c.pos++
			c.stack = append(c.stack, checkFrame{obj: ch == '{'})
			if ch == '{' && !c.rules.AllowDuplicateNames {
				c.names.Open()
			}
			c.ws()
			if c.pos < len(c.in) && c.in[c.pos] == closer(ch == '{') {
				c.pos++
				c.pop()
				break
			}
			if err := c.member(); err != nil {
				return err
			}
			continue
		case ch == '"':
			if _, err := c.str(); err != nil {
				return err
			}
		case ch == '-' || ch >= '0' && ch <= '9':
			if err := c.number(); err != nil {
				return err
			}
		default:
			if err := c.literal(); err != nil {
				return err
			}
		}
		// After a value: close containers or go on to the next element.
		for {
			c.ws()
			if len(c.stack) == 0 {
				if c.pos != len(c.in) && !c.rules.AllowTrailingData {
					return c.fail(ErrTrailingData, c.pos)
				}
				return nil
			}
			if c.pos >= len(c.in) {
				return c.fail(ErrSyntax, c.pos)
			}
			top := &c.stack[len(c.stack)-1]
			ch := c.in[c.pos]
			c.pos++
			switch {
			case ch == ',':
				c.ws()
				top.idx++
				if err := c.member(); err != nil {
					return err
				}
			case ch == closer(top.obj):
				c.pop()
				continue
			default:
				return c.fail(ErrSyntax, c.pos-1)
			}
			break
		}
	}
}

func closer(obj bool) byte {
	if obj {
		return '}'
	}
	return ']'
}

func (c *checker) pop() {
	if c.stack[len(c.stack)-1].obj && !c.rules.AllowDuplicateNames {
		c.names.Close()
	}
	c.stack = c.stack[:len(c.stack)-1]
}

// member reads what precedes the next element of the innermost container:
// in an object, the name (checked against its siblings') and the colon.
func (c *checker) member() error {
	top := &c.stack[len(c.stack)-1]
	if !top.obj {
		return nil
	}
	if c.pos >= len(c.in) || c.in[c.pos] != '"' {
		return c.fail(ErrSyntax, c.pos)
	}
	start := c.pos
	top.nameOff = start
	name, err := c.str()
	if err != nil {
		return err
	}
	if !c.rules.AllowDuplicateNames && c.names.Add(name) {
		return c.fail(ErrDuplicateName, start)
	}
	c.ws()
	if c.pos >= len(c.in) || c.in[c.pos] != ':' {
		return c.fail(ErrSyntax, c.pos)
	}
	c.pos++
	c.ws()
	return nil
}

// str reads the string at c.pos and returns its decoded text (valid until
// the next call).
func (c *checker) str() ([]byte, error) {
	in, start := c.in, c.pos
	i := start + 1
	var high byte // any byte >= 0x80 sets its top bit
	for i < len(in) && in[i] != '"' && in[i] != '\\' && in[i] >= 0x20 {
		high |= in[i]
		i++
	}
	if i >= len(in) || in[i] < 0x20 {
		return nil, c.fail(ErrSyntax, i)
	}
	if in[i] == '"' {
		if high >= utf8.RuneSelf && !c.rules.AllowInvalidUTF8 && !utf8.Valid(in[start+1:i]) {
			return nil, c.fail(ErrInvalidUTF8, start)
		}
		c.pos = i + 1
		return in[start+1 : i], nil
	}
	var ok bool
	c.key = append(c.key[:0], in[start+1:i]...)
	c.key, i, ok = Unescape(c.key, in, i)
	if !ok {
		return nil, c.fail(ErrSyntax, i)
	}
	// Escapes are ASCII: the raw text is UTF-8 when its bytes are.
	if !c.rules.AllowInvalidUTF8 && !utf8.Valid(in[start+1:i-1]) {
		return nil, c.fail(ErrInvalidUTF8, start)
	}
	c.pos = i
	return c.key, nil
}

func (c *checker) number() error {
	in, i := c.in, c.pos
	digits := func() bool {
		n := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		return i > n
	}
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case !digits():
		return c.fail(ErrSyntax, i)
	}
	if i < len(in) && in[i] == '.' {
		i++
		if !digits() {
			return c.fail(ErrSyntax, i)
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		if !digits() {
			return c.fail(ErrSyntax, i)
		}
	}
	c.pos = i
	return nil
}

func (c *checker) literal() error {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(c.in)-c.pos >= len(lit) && string(c.in[c.pos:c.pos+len(lit)]) == lit {
			c.pos += len(lit)
			return nil
		}
	}
	return c.fail(ErrSyntax, c.pos)
}

// pointer is the JSON pointer of the member being read: the path of
// names and indices down the open containers.
func (c *checker) pointer() string {
	var b strings.Builder
	for _, f := range c.stack {
		b.WriteByte('/')
		if !f.obj {
			b.WriteString(strconv.Itoa(f.idx))
			continue
		}
		// Decoded again here, on the error path only.
		var name []byte
		if end := f.nameOff + 1; end <= len(c.in) {
			j := end
			for j < len(c.in) && c.in[j] != '"' && c.in[j] != '\\' {
				j++
			}
			name = append(name, c.in[end:j]...)
			if j < len(c.in) && c.in[j] == '\\' {
				name, _, _ = Unescape(name, c.in, j)
			}
		}
		s := strings.ToValidUTF8(string(name), "\uFFFD")
		s = strings.ReplaceAll(s, "~", "~0")
		b.WriteString(strings.ReplaceAll(s, "/", "~1"))
	}
	return b.String()
}

// Unescape decodes the rest of a JSON string from in[i] up to and
// including its closing quote, appending the text to dst, and returns the
// offset after the quote. Escapes are resolved as encoding/json does: an
// unpaired surrogate becomes U+FFFD. ok is false when the string is
// malformed or unterminated.
func Unescape(dst, in []byte, i int) (out []byte, next int, ok bool) {
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"':
			return dst, i + 1, true
		case c < 0x20:
			return dst, i, false
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(in) {
			return dst, i, false
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
			r, ok := Hex4(in, i)
			if !ok {
				return dst, i, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if r2, ok := Hex4(in, i+2); ok && i+1 < len(in) && in[i] == '\\' && in[i+1] == 'u' {
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
			return dst, i, false
		}
	}
	return dst, i, false
}

// Hex4 reads the four hex digits of a \u escape at in[i:].
func Hex4(in []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(in) {
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
