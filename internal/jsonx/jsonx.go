// Package jsonx is gatehouse's hand-written JSON: the one string encoder,
// used where encoding/json would cost an allocation per value on a hot path
// (audit lines and redacted response bodies, which people and other
// programs read back, so both escape alike); and the strict reading rules
// (one JSON text, unique member names) that the OpenAPI validator's guard
// (Check) and the redaction scanner (Names, Unescape) share, so that both
// call the same bodies strict and the same two names equal.
package jsonx

import (
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. It escapes what JSON requires
// (quote, backslash, control characters), U+2028 and U+2029 (which break
// JavaScript readers) and replaces invalid UTF-8 with U+FFFD, as
// encoding/json does; it leaves <, > and & alone (no HTML here). It also
// escapes DEL and the C1 controls U+0080-U+009F: subjects, claims and
// response fields come from callers, and an operator reads audit files
// with cat or tail.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' || (r >= 0x80 && r <= 0x9f) {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendBytes is AppendString of v's bytes, without copying them.
func AppendBytes(b, v []byte) []byte {
	// v is only read, and not kept past the call.
	return AppendString(b, unsafe.String(unsafe.SliceData(v), len(v)))
}
