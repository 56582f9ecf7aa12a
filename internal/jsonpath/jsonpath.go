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

// Lookup reads the value at p in a JSON document (numbers as
// json.Number). ok is false when the document is not JSON or has nothing
// at p.
func (p Path) Lookup(doc []byte) (any, bool) {
	if p.IsZero() {
		return nil, false
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil, false
	}
	for _, s := range p.steps {
		if s.index < 0 {
			m, isObj := v.(map[string]any)
			if !isObj {
				return nil, false
			}
			var found bool
			if v, found = m[s.key]; !found {
				return nil, false
			}
			continue
		}
		a, isArr := v.([]any)
		if !isArr || s.index >= len(a) {
			return nil, false
		}
		v = a[s.index]
	}
	return v, true
}
