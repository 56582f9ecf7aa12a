package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Pos is a location in a config file. Line and Column are 1-based; a zero
// Line means the location is unknown (for example a default value).
type Pos struct {
	File   string
	Line   int
	Column int
}

// String renders the position as file:line, the form editors jump to.
func (p Pos) String() string {
	switch {
	case p.File == "" && p.Line == 0:
		return ""
	case p.Line == 0:
		return p.File
	default:
		return p.File + ":" + strconv.Itoa(p.Line)
	}
}

// Path is a field path into the config, with list indices and map keys,
// such as routes[2].ratelimit.tiers.gold.per. The empty Path is the root.
type Path string

// Field returns the path of the named field below p.
func (p Path) Field(name string) Path {
	if p == "" {
		return Path(name)
	}
	return p + "." + Path(name)
}

// Index returns the path of element i of the list at p.
func (p Path) Index(i int) Path {
	return p + Path("["+strconv.Itoa(i)+"]")
}

// Key returns the path of the map entry k of the map at p. Keys that are
// plain identifiers read as fields (tiers.gold); others are quoted
// (headers["x-api-key"]) so that the path stays unambiguous.
func (p Path) Key(k string) Path {
	if isIdent(k) {
		return p.Field(k)
	}
	return p + Path("["+strconv.Quote(k)+"]")
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// FieldError is one problem found in the config: where it is, which field,
// what is wrong and, where it helps, what would be valid.
type FieldError struct {
	Pos     Pos
	Path    Path
	Msg     string
	Warning bool
}

// Error renders the problem as "file:line: path: message".
func (e *FieldError) Error() string {
	var b strings.Builder
	if s := e.Pos.String(); s != "" {
		b.WriteString(s)
		b.WriteString(": ")
	}
	if e.Warning {
		b.WriteString("warning: ")
	}
	if e.Path != "" {
		b.WriteString(string(e.Path))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors collects every problem of a config so that one run of
// `gatehouse validate` shows all of them. Warnings ride along but do not
// make the config invalid.
type Errors []*FieldError

// Add records an error at path.
func (es *Errors) Add(path Path, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Warn records a warning at path.
func (es *Errors) Warn(path Path, format string, args ...any) {
	*es = append(*es, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// Append adds the problems of another list, for example a component's.
func (es *Errors) Append(other Errors) { *es = append(*es, other...) }

// HasErrors reports whether any entry is an error rather than a warning.
func (es Errors) HasErrors() bool {
	for _, e := range es {
		if !e.Warning {
			return true
		}
	}
	return false
}

// Warnings returns only the warnings.
func (es Errors) Warnings() Errors {
	var out Errors
	for _, e := range es {
		if e.Warning {
			out = append(out, e)
		}
	}
	return out
}

// Err returns es as an error when it holds at least one error (warnings
// alone are not an error), and nil otherwise.
func (es Errors) Err() error {
	if !es.HasErrors() {
		return nil
	}
	return es
}

// Error renders one problem per line, in file and line order.
func (es Errors) Error() string {
	lines := make([]string, 0, len(es))
	for _, e := range es.Sorted() {
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}

// Sorted orders problems by file, line and path so that output is stable.
func (es Errors) Sorted() Errors {
	out := append(Errors(nil), es...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Pos.File != b.Pos.File {
			return a.Pos.File < b.Pos.File
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		return a.Path < b.Path
	})
	return out
}

// Located returns a copy of es with each position filled in from src, for
// problems found after decoding (by Validate or by a component compiling
// its part of the config).
func (es Errors) Located(src *Source) Errors {
	out := make(Errors, len(es))
	for i, e := range es {
		c := *e
		if c.Pos.Line == 0 && src != nil {
			c.Pos = src.Locate(c.Path)
		}
		out[i] = &c
	}
	return out
}
