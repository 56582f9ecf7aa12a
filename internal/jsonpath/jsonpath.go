// Package jsonpath is the small JSON path gatehouse's config accepts where
// a value is read out of a JSON body ($.usage.total_tokens,
// $.choices[0].n): parsed once when the config is loaded, looked up by
// the component that reads the body.
package jsonpath

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
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

// Parse reads a JSON path.
func Parse(s string) (Path, error) {
	if !strings.HasPrefix(s, "$") {
		return Path{}, fmt.Errorf("jsonpath: %q is not a JSON path; start it with $, as in $.usage.total_tokens", s)
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
				return Path{}, fmt.Errorf("jsonpath: JSON path %q has an empty name", s)
			}
			p.steps = append(p.steps, pathStep{key: rest[:n], index: -1})
			rest = rest[n:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return Path{}, fmt.Errorf("jsonpath: JSON path %q has an unclosed [", s)
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i > 1<<20 {
				return Path{}, fmt.Errorf("jsonpath: JSON path %q: %q is not an array index", s, rest[1:end])
			}
			p.steps = append(p.steps, pathStep{index: i})
			rest = rest[end+1:]
		default:
			return Path{}, fmt.Errorf("jsonpath: JSON path %q: expected . or [ at %q", s, rest)
		}
	}
	if len(p.steps) == 0 {
		return Path{}, fmt.Errorf("jsonpath: JSON path %q selects the whole document, not a number", s)
	}
	return p, nil
}

// String returns the path as written.
func (p Path) String() string { return p.src }

// IsZero reports whether p is no path.
func (p Path) IsZero() bool { return len(p.steps) == 0 }

// Lookup reads the value at p in a JSON document without decoding the
// rest of it: numbers as json.Number, strings, bools, nil for null,
// objects and arrays as json.RawMessage (a slice of doc). ok is false when
// nothing is at p. On a valid document it answers as decoding the whole
// document would (the last of duplicate keys wins); a document cut short
// still answers for a value read whole before the cut — a number must be
// followed by what ends it, so a cut number never reads as a smaller one.
func (p Path) Lookup(doc []byte) (any, bool) {
	if p.IsZero() {
		return nil, false
	}
	i := ws(doc, 0)
	for _, s := range p.steps {
		var ok bool
		if s.index < 0 {
			i, ok = member(doc, i, s.key)
		} else {
			i, ok = element(doc, i, s.index)
		}
		if !ok {
			return nil, false
		}
	}
	return value(doc, i)
}

// member finds key in the object at doc[i:] and returns where its value
// starts (the last one of duplicates).
func member(doc []byte, i int, key string) (int, bool) {
	if i >= len(doc) || doc[i] != '{' {
		return 0, false
	}
	i = ws(doc, i+1)
	found := -1
	if i < len(doc) && doc[i] == '}' {
		return 0, false
	}
	for {
		if i >= len(doc) || doc[i] != '"' {
			break
		}
		end, ok := skipString(doc, i)
		if !ok {
			break
		}
		name := doc[i+1 : end-1]
		i = ws(doc, end)
		if i >= len(doc) || doc[i] != ':' {
			break
		}
		i = ws(doc, i+1)
		match := keyIs(name, key)
		next, ok := skipValue(doc, i)
		if !ok {
			break // cut short: the value at i is not whole
		}
		if match {
			found = i
		}
		i = ws(doc, next)
		if i < len(doc) && doc[i] == ',' {
			i = ws(doc, i+1)
			continue
		}
		break
	}
	return found, found >= 0
}

// element finds the n-th value of the array at doc[i:].
func element(doc []byte, i, n int) (int, bool) {
	if i >= len(doc) || doc[i] != '[' {
		return 0, false
	}
	i = ws(doc, i+1)
	if i < len(doc) && doc[i] == ']' {
		return 0, false
	}
	for k := 0; ; k++ {
		if k == n {
			return i, i < len(doc)
		}
		next, ok := skipValue(doc, i)
		if !ok {
			return 0, false
		}
		i = ws(doc, next)
		if i >= len(doc) || doc[i] != ',' {
			return 0, false
		}
		i = ws(doc, i+1)
	}
}

// keyIs compares a raw (still escaped) object key with key.
func keyIs(raw []byte, key string) bool {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw) == key
	}
	var s string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	return json.Unmarshal(q, &s) == nil && s == key
}

// value reads the value at doc[i:].
func value(doc []byte, i int) (any, bool) {
	if i >= len(doc) {
		return nil, false
	}
	end, ok := skipValue(doc, i)
	if !ok {
		return nil, false
	}
	switch c := doc[i]; {
	case c == '"':
		var s string
		if json.Unmarshal(doc[i:end], &s) != nil {
			return nil, false
		}
		return s, true
	case c == '{' || c == '[':
		return json.RawMessage(doc[i:end]), true
	}
	// A number or literal counts only when something ends it: a body cut
	// inside "1234" must not read as 12.
	if t := ws(doc, end); t >= len(doc) || (doc[t] != ',' && doc[t] != '}' && doc[t] != ']') {
		return nil, false
	}
	switch lit := string(doc[i:end]); lit {
	case "true":
		return true, true
	case "false":
		return false, true
	case "null":
		return nil, true
	default:
		if !isNumber(lit) {
			return nil, false
		}
		return json.Number(lit), true
	}
}

func ws(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at doc[i].
func skipString(doc []byte, i int) (int, bool) {
	for i++; i < len(doc); i++ {
		switch doc[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the value starting at doc[i]; false
// when it is not whole.
func skipValue(doc []byte, i int) (int, bool) {
	if i >= len(doc) {
		return 0, false
	}
	switch doc[i] {
	case '"':
		return skipString(doc, i)
	case '{', '[':
		depth := 0
		for ; i < len(doc); i++ {
			switch doc[i] {
			case '"':
				end, ok := skipString(doc, i)
				if !ok {
					return 0, false
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
		}
		return 0, false
	}
	start := i
	for i < len(doc) && (doc[i] >= '0' && doc[i] <= '9' || doc[i] >= 'a' && doc[i] <= 'z' || doc[i] >= 'A' && doc[i] <= 'Z' || doc[i] == '-' || doc[i] == '+' || doc[i] == '.') {
		i++
	}
	return i, i > start
}

// isNumber reports whether s is a JSON number.
func isNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	return i == len(s)
}
