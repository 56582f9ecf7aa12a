package jsonpath

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in    string
		steps []pathStep
	}{
		{"$.usage.total_tokens", []pathStep{{key: "usage", index: -1}, {key: "total_tokens", index: -1}}},
		{"$.choices[0].n", []pathStep{{key: "choices", index: -1}, {index: 0}, {key: "n", index: -1}}},
		{"$[2]", []pathStep{{index: 2}}},
	} {
		p, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", tc.in, err)
		}
		if len(p.steps) != len(tc.steps) {
			t.Fatalf("Parse(%q) = %+v; want %+v", tc.in, p.steps, tc.steps)
		}
		for i := range p.steps {
			if p.steps[i] != tc.steps[i] {
				t.Errorf("Parse(%q) step %d = %+v; want %+v", tc.in, i, p.steps[i], tc.steps[i])
			}
		}
		if p.String() != tc.in {
			t.Errorf("String() = %q; want %q", p.String(), tc.in)
		}
	}
	for _, bad := range []string{"", "usage", "$", "$.", "$.a..b", "$[x]", "$[1", "$a", "$[-1]", "$[99999999]"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = nil error; want one", bad)
		}
	}
}

func TestLookup(t *testing.T) {
	p, _ := Parse("$.a[1].b")
	v, ok := p.Lookup([]byte(`{"a":[{"b":1},{"b":"x"}]}`))
	if !ok || v != "x" {
		t.Errorf("Lookup = %v, %v; want x, true", v, ok)
	}
	v, ok = p.Lookup([]byte(`{"a":[{"b":1},{"c":2}]}`))
	if ok {
		t.Errorf("Lookup of a missing key = %v, true; want false", v)
	}
	p, _ = Parse("$.n")
	if v, ok := p.Lookup([]byte(`{"n":12345678901234567890}`)); !ok || v != json.Number("12345678901234567890") {
		t.Errorf("a large number = %v, %v; want it as written", v, ok)
	}
}

// FuzzParse: Parse never panics, and what it accepts it renders back and
// looks up without panicking.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"$.usage.total_tokens", "$.choices[0].n", "$[", "$.a[1", "$..x"} {
		f.Add(s, []byte(`{"usage":{"total_tokens":3},"choices":[{"n":1}]}`))
	}
	f.Fuzz(func(t *testing.T, s string, doc []byte) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("String() = %q; want %q", p.String(), s)
		}
		p.Lookup(doc)
	})
}

// reference is Lookup written the obvious way: decode the whole document.
func reference(p Path, doc []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil, false
	}
	for _, s := range p.steps {
		if s.index < 0 {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[s.key]; !ok {
				return nil, false
			}
			continue
		}
		a, ok := v.([]any)
		if !ok || s.index >= len(a) {
			return nil, false
		}
		v = a[s.index]
	}
	return v, true
}

// FuzzLookup: on every valid JSON document, Lookup answers as decoding
// the whole document does; on any input, it never panics, and a number it
// reads from a cut or broken document is one that was there whole.
func FuzzLookup(f *testing.F) {
	for _, seed := range []struct{ path, doc string }{
		{"$.usage.total_tokens", `{"usage":{"total_tokens":42},"x":[1,{"y":"}"}]}`},
		{"$.a", `{"a":1,"a":2}`},
		{"$.a[1]", `{"a":[{"b":"\"]"},3e5]}`},
		{"$.k\u00e9", `{"k\u00e9":-0.5}`},
		{"$.a", `{"a":12`},
		{"$.a.b", `{"a":null}`},
	} {
		f.Add(seed.path, []byte(seed.doc))
	}
	f.Fuzz(func(t *testing.T, path string, doc []byte) {
		p, err := Parse(path)
		if err != nil {
			return
		}
		got, ok := p.Lookup(doc)
		if !json.Valid(doc) {
			return
		}
		want, wok := reference(p, doc)
		if ok != wok {
			t.Fatalf("Lookup(%q, %q) found %v; the whole document says %v", path, doc, ok, wok)
		}
		if !ok {
			return
		}
		if raw, isRaw := got.(json.RawMessage); isRaw {
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&got); err != nil {
				t.Fatalf("raw value %q: %v", raw, err)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Lookup(%q, %q) = %#v; the whole document says %#v", path, doc, got, want)
		}
	})
}

func TestLookupCutShort(t *testing.T) {
	p, _ := Parse("$.usage.total_tokens")
	for _, doc := range []string{`{"usage":{"total_tokens":1234`, `{"usage":{"total_tokens":12`, `{"usage":{"total_tokens"`, `{"usage":{"total_tokens":1234 `} {
		if v, ok := p.Lookup([]byte(doc)); ok {
			t.Errorf("Lookup(%q) = %v; want nothing (the number may be cut)", doc, v)
		}
	}
	if v, ok := p.Lookup([]byte(`{"usage":{"total_tokens":1234},"choices":[{"mess`)); !ok || v != json.Number("1234") {
		t.Errorf("a value read whole before the cut = %v, %v; want 1234", v, ok)
	}
}
