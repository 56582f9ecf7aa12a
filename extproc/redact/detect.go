package redact

import (
	"bytes"
	"regexp"
	"sort"
	"unicode"
	"unicode/utf8"
)

// Kind is what a masked value was found as. It labels the metric.
type Kind int

// Kinds of masked values.
const (
	KindPath Kind = iota
	KindEmail
	KindCard
	KindNationalID
	KindBearer
	KindJWT
	numKinds
)

var kindNames = [numKinds]string{"path", "email", "card", "national_id", "bearer", "jwt"}

// String is the metric label of k.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return "unknown"
	}
	return kindNames[k]
}

// Kinds lists every kind, in order, for pre-creating metric series.
func Kinds() []Kind {
	out := make([]Kind, numKinds)
	for i := range out {
		out[i] = Kind(i)
	}
	return out
}

// Counts is how many values of each kind one body had masked.
type Counts [numKinds]int

// Total is the number of masked values.
func (c *Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Replacements written in place of detected secrets. None of them can be
// detected again, so redacting redacted output changes nothing.
var (
	maskEmail      = []byte("[REDACTED:email]")
	maskNationalID = []byte("[REDACTED:national-id]")
	maskJWT        = []byte("[REDACTED:jwt]")
	maskToken      = []byte("[REDACTED]")
)

// span is one secret found in a string: s[start:end].
type span struct {
	start, end int
	kind       Kind
}

// detectors are the detectors switched on for a route.
type detectors struct {
	email, cards, nationalIDs, bearer bool
	patterns                          []*regexp.Regexp
}

func (d *detectors) any() bool {
	return d.email || d.cards || d.nationalIDs || d.bearer || len(d.patterns) > 0
}

// Byte classes for the string scanner's cheap prefilter.
const (
	clsStop  = 1 << iota // '"', '\\' or a control character: ends the fast loop
	clsAt                // '@': maybe an e-mail address
	clsDigit             // maybe a card or national id number
)

var cls = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = clsStop
	}
	t['"'], t['\\'] = clsStop, clsStop
	t['@'] = clsAt
	for c := '0'; c <= '9'; c++ {
		t[c] = clsDigit
	}
	return t
}()

// interesting reports whether a string with prefilter flags f and length
// n may hold something d detects; most strings are skipped here.
func (d *detectors) interesting(f uint8, n int) bool {
	switch {
	case len(d.patterns) > 0:
		return true
	case d.bearer && n >= 15:
		return true
	case d.email && f&clsAt != 0:
		return true
	case (d.cards || d.nationalIDs) && f&clsDigit != 0:
		return true
	}
	return false
}

// flagsOf computes the prefilter flags of s (the scanner computes them
// while it looks for the closing quote; decoded strings need this).
func flagsOf(s []byte) uint8 {
	var f uint8
	for _, c := range s {
		f |= cls[c]
	}
	return f &^ clsStop
}

// find appends the secrets in s to spans, sorted and without overlaps. f
// are s's prefilter flags.
func (d *detectors) find(s []byte, spans []span, f uint8) []span {
	spans = spans[:0]
	if d.bearer {
		spans = findBearer(s, spans)
		spans = findJWT(s, spans)
	}
	if d.email && f&clsAt != 0 {
		spans = findEmail(s, spans)
	}
	if (d.cards || d.nationalIDs) && f&clsDigit != 0 {
		spans = findNumbers(s, spans, d.cards, d.nationalIDs)
	}
	for _, re := range d.patterns {
		for _, m := range re.FindAllIndex(s, -1) {
			if m[1] > m[0] {
				spans = append(spans, span{m[0], m[1], KindNationalID})
			}
		}
	}
	if len(spans) < 2 {
		return spans
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	// Overlaps: the earlier (then longer) span wins; a later one that
	// sticks out past it is extended over, so nothing is left half-masked.
	out := spans[:1]
	for _, sp := range spans[1:] {
		last := &out[len(out)-1]
		if sp.start < last.end {
			if sp.end > last.end {
				last.end = sp.end
				if last.kind == KindCard { // a card mask keeps digits; be safe
					last.kind = sp.kind
					if sp.kind == KindCard {
						last.kind = KindNationalID
					}
				}
			}
			continue
		}
		out = append(out, sp)
	}
	return out
}

// apply writes s with spans masked to dst.
func apply(dst, s []byte, spans []span) []byte {
	prev := 0
	for _, sp := range spans {
		dst = append(dst, s[prev:sp.start]...)
		switch sp.kind {
		case KindEmail:
			dst = append(dst, maskEmail...)
		case KindNationalID:
			dst = append(dst, maskNationalID...)
		case KindJWT:
			dst = append(dst, maskJWT...)
		case KindBearer:
			dst = append(dst, maskToken...)
		case KindCard:
			dst = maskCard(dst, s[sp.start:sp.end])
		default:
			dst = append(dst, maskToken...)
		}
		prev = sp.end
	}
	return append(dst, s[prev:]...)
}

// maskCard keeps a card number's separators and last four digits and
// stars the other digits, the form receipts print.
func maskCard(dst, num []byte) []byte {
	digits := 0
	for _, c := range num {
		if isDigit(c) {
			digits++
		}
	}
	for _, c := range num {
		if isDigit(c) {
			if digits > 4 {
				c = '*'
			}
			digits--
		}
		dst = append(dst, c)
	}
	return dst
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func isB64URL(c byte) bool { return isAlnum(c) || c == '-' || c == '_' }

func isToken68(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// findBearer finds the credential of "Bearer <token>" (any of bearer,
// Bearer, BEARER). A token must be 8 or more token68 characters with a
// digit in them, so that prose ("the bearer of this letter") is left alone.
func findBearer(s []byte, spans []span) []span {
	for _, needle := range [...]string{"earer ", "EARER "} {
		off := 0
		for {
			i := bytes.Index(s[off:], []byte(needle))
			if i < 0 {
				break
			}
			i += off
			off = i + len(needle)
			if i == 0 || s[i-1]|0x20 != 'b' || (i >= 2 && isAlnum(s[i-2])) {
				continue
			}
			j := off
			for j < len(s) && s[j] == ' ' {
				j++
			}
			k, digit := j, false
			for k < len(s) && isToken68(s[k]) {
				digit = digit || isDigit(s[k])
				k++
			}
			for k < len(s) && s[k] == '=' {
				k++
			}
			if k-j >= 8 && digit {
				spans = append(spans, span{j, k, KindBearer})
				off = k
			}
		}
	}
	return spans
}

// findJWT finds compact JWS/JWE-looking tokens: a base64url header that
// starts with eyJ ('{"'), a payload and a signature, dot-separated.
func findJWT(s []byte, spans []span) []span {
	off := 0
	for {
		i := bytes.Index(s[off:], []byte("eyJ"))
		if i < 0 {
			return spans
		}
		i += off
		off = i + 3
		if i > 0 && isB64URL(s[i-1]) {
			continue
		}
		j := i
		for j < len(s) && isB64URL(s[j]) {
			j++
		}
		if j-i < 10 || j >= len(s) || s[j] != '.' {
			continue
		}
		k := j + 1
		for k < len(s) && isB64URL(s[k]) {
			k++
		}
		if k-j-1 < 2 || k >= len(s) || s[k] != '.' {
			continue
		}
		k++
		for k < len(s) && (isB64URL(s[k]) || s[k] == '.') {
			k++
		}
		spans = append(spans, span{i, k, KindJWT})
		off = k
	}
}

// isLocal reports whether c may be part of an e-mail local part (RFC 5322
// atext, and '.').
func isLocal(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '.', '!', '#', '$', '%', '&', '\'', '*', '+', '/', '=', '?', '^', '_', '`', '{', '|', '}', '~', '-':
		return true
	}
	return false
}

func isDomain(c byte) bool { return isAlnum(c) || c == '-' || c == '.' }

// isWordRune reports whether a non-ASCII rune may be part of an
// internationalized address (RFC 6531 local parts, IDN domains such as
// müller.de): letters, digits and combining marks, not punctuation such
// as curly quotes or dashes around an address in prose.
func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))
}

// findEmail finds local@domain.tld addresses.
func findEmail(s []byte, spans []span) []span {
	minStart := 0
	for at := bytes.IndexByte(s, '@'); at >= 0; {
		l := at
		for l > minStart {
			if c := s[l-1]; c < utf8.RuneSelf {
				if !isLocal(c) {
					break
				}
				l--
				continue
			}
			r, n := utf8.DecodeLastRune(s[minStart:l])
			if !isWordRune(r) {
				break
			}
			l -= n
		}
		r := at + 1
		for r < len(s) {
			if c := s[r]; c < utf8.RuneSelf {
				if !isDomain(c) {
					break
				}
				r++
				continue
			}
			c, n := utf8.DecodeRune(s[r:])
			if !isWordRune(c) {
				break
			}
			r += n
		}
		for r > at+1 && (s[r-1] == '.' || s[r-1] == '-') {
			r--
		}
		next := r
		if l < at && validDomain(s[at+1:r]) {
			spans = append(spans, span{l, r, KindEmail})
			minStart = r
		} else {
			next = at + 1
		}
		i := bytes.IndexByte(s[next:], '@')
		if i < 0 {
			break
		}
		at = next + i
	}
	return spans
}

// validDomain accepts label(.label)+ whose last label is 2+ letters
// (ASCII, or the letters of an internationalized top-level domain).
func validDomain(d []byte) bool {
	dot := bytes.LastIndexByte(d, '.')
	if dot <= 0 {
		return false
	}
	n := 0
	for _, r := range string(d[dot+1:]) {
		if r < utf8.RuneSelf && !isAlpha(byte(r)) || r >= utf8.RuneSelf && !unicode.IsLetter(r) {
			return false
		}
		n++
	}
	return n >= 2
}
