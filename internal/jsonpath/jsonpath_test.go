package jsonpath

import (
	"encoding/json"
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
