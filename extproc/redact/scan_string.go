package redact

import (
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/jsonx"
)

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
	s.str = append(s.str[:0], in[start+1:i]...)
	dec := s.str
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
