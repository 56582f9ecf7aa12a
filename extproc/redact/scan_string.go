package redact

import (
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
	needKey := isKey && (len(s.r.m.paths) > 0 || s.dupChk)
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
	var ok bool
	dec, i, ok = jsonx.Unescape(dec, in, i)
	s.str = dec
	if !ok {
		return errSyntax
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
