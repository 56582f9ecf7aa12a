package redact

import (
	"fmt"
	"strconv"
	"strings"
)

// segment is one step of a compiled JSONPath.
type segment struct {
	key   string // member name; "" with any
	index int    // array index; -1 when not an index step
	any   bool   // "*": every member or element
	desc  bool   // "..": at this depth or any deeper one
}

// compilePath parses the JSONPath subset redaction supports:
//
//	$.a.b   $['a-b']   $["a"]   $.a[0]   $.a[*]   $.a.*   $..name   $..*
func compilePath(s string) ([]segment, error) {
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("redact: path %q must start with $", s)
	}
	var segs []segment
	i := 1
	for i < len(s) {
		desc := false
		switch s[i] {
		case '.':
			i++
			if i < len(s) && s[i] == '.' {
				desc = true
				i++
			}
			if i < len(s) && s[i] == '[' {
				if !desc {
					return nil, fmt.Errorf("redact: path %q: '.' cannot be followed by '['", s)
				}
				seg, n, err := bracket(s, i)
				if err != nil {
					return nil, err
				}
				seg.desc = true
				segs = append(segs, seg)
				i = n
				continue
			}
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			name := s[i:j]
			switch {
			case name == "":
				return nil, fmt.Errorf("redact: path %q: empty member name at offset %d", s, i)
			case name == "*":
				segs = append(segs, segment{any: true, index: -1, desc: desc})
			case strings.ContainsAny(name, "*'\" ()?@$,:"):
				return nil, fmt.Errorf("redact: path %q: member name %q needs brackets: ['%s']", s, name, name)
			default:
				segs = append(segs, segment{key: name, index: -1, desc: desc})
			}
			i = j
		case '[':
			seg, n, err := bracket(s, i)
			if err != nil {
				return nil, err
			}
			segs = append(segs, seg)
			i = n
		default:
			return nil, fmt.Errorf("redact: path %q: unexpected %q at offset %d", s, s[i], i)
		}
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("redact: path %q selects the whole body; name a member, e.g. $.user.email", s)
	}
	return segs, nil
}

// bracket parses [N], [*], ['name'] or ["name"] at s[i] == '['.
func bracket(s string, i int) (segment, int, error) {
	end := -1
	if i+1 < len(s) && (s[i+1] == '\'' || s[i+1] == '"') {
		q := s[i+1]
		j := strings.IndexByte(s[i+2:], q)
		if j < 0 || i+2+j+1 >= len(s) || s[i+2+j+1] != ']' {
			return segment{}, 0, fmt.Errorf("redact: path %q: unterminated [%c...%c] at offset %d", s, q, q, i)
		}
		name := s[i+2 : i+2+j]
		if name == "" {
			return segment{}, 0, fmt.Errorf("redact: path %q: empty member name at offset %d", s, i)
		}
		return segment{key: name, index: -1}, i + 2 + j + 2, nil
	}
	end = strings.IndexByte(s[i:], ']')
	if end < 0 {
		return segment{}, 0, fmt.Errorf("redact: path %q: unterminated [ at offset %d", s, i)
	}
	in := s[i+1 : i+end]
	if in == "*" {
		return segment{any: true, index: -1}, i + end + 1, nil
	}
	n, err := strconv.Atoi(in)
	if err != nil || n < 0 || in != strconv.Itoa(n) {
		return segment{}, 0, fmt.Errorf("redact: path %q: [%s] is not an index, * or a quoted name", s, in)
	}
	return segment{index: n}, i + end + 1, nil
}

// state is a position in one compiled path: the next segment to match.
type state struct {
	path, seg int32
}

// matcher tracks, per nesting level, which path positions are live.
type matcher struct {
	paths [][]segment
}

// root returns the states live for the root's members.
func (m *matcher) root(buf []state) []state {
	for p := range m.paths {
		buf = append(buf, state{int32(p), 0})
	}
	return buf
}

// step appends to buf the states live below a child (named key, or at
// index idx when isIndex) of a value whose live states are parent, and
// reports whether some path ends at that child (it is selected).
func (m *matcher) step(buf []state, parent []state, key []byte, idx int, isIndex bool) ([]state, bool) {
	matched := false
	start := len(buf)
	for _, st := range parent {
		seg := &m.paths[st.path][st.seg]
		if seg.desc {
			buf = addState(buf, start, st) // ".." keeps looking deeper
		}
		ok := false
		switch {
		case seg.any:
			ok = true
		case isIndex:
			ok = seg.index == idx
		default:
			ok = seg.index < 0 && seg.key == string(key)
		}
		if !ok {
			continue
		}
		if int(st.seg)+1 == len(m.paths[st.path]) {
			matched = true
			continue
		}
		buf = addState(buf, start, state{st.path, st.seg + 1})
	}
	return buf, matched
}

// addState appends st unless buf[start:] already holds it, which keeps the state
// set bounded by the total number of segments however deep ".." recurses.
func addState(buf []state, start int, st state) []state {
	for _, x := range buf[start:] {
		if x == st {
			return buf
		}
	}
	return append(buf, st)
}
