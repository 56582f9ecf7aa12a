package budget

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/jsonpath"
)

func TestPath(t *testing.T) {
	doc := []byte(`{"usage":{"total_tokens":42,"frac":1.2,"neg":-1,"big":1e300,"s":"7"},"choices":[{"n":3},{"n":4}]}`)
	for _, tc := range []struct {
		path   string
		want   uint64
		wantOK bool
	}{
		{"$.usage.total_tokens", 42, true},
		{"$.usage.frac", 2, true},
		{"$.usage.neg", 0, false},
		{"$.usage.big", 0, false},
		{"$.usage.s", 0, false},
		{"$.usage.missing", 0, false},
		{"$.choices[1].n", 4, true},
		{"$.choices[2].n", 0, false},
		{"$.usage[0]", 0, false},
	} {
		p, err := jsonpath.Parse(tc.path)
		if err != nil {
			t.Fatalf("jsonpath.Parse(%q) = %v", tc.path, err)
		}
		got, ok := Lookup(p, doc)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Lookup(%q) = %d, %v; want %d, %v", tc.path, got, ok, tc.want, tc.wantOK)
		}
	}
	for _, bad := range []string{"", "usage", "$", "$.", "$.a..b", "$[x]", "$[1", "$a"} {
		if _, err := jsonpath.Parse(bad); err == nil {
			t.Errorf("jsonpath.Parse(%q) = nil error; want one", bad)
		}
	}
	p, _ := jsonpath.Parse("$.a")
	if _, ok := Lookup(p, []byte("not json")); ok {
		t.Error("Lookup of a non-JSON body found a cost")
	}
}

// TestSSE feeds an OpenAI-style stream in every split into two chunks:
// the cost is the usage of the last event that has one, whatever the
// chunking.
func TestSSE(t *testing.T) {
	stream := "data: {\"choices\":[{\"delta\":{\"content\":\"he\"}}],\"usage\":null}\r\n\r\n" +
		": keep-alive\n\n" +
		"event: message\ndata: {\"choices\":[],\n" +
		"data: \"usage\":{\"total_tokens\":17}}\n\n" +
		"data: {\"usage\":{\"total_tokens\":23}}\n\n" +
		"data: [DONE]\n\n"
	p, _ := jsonpath.Parse("$.usage.total_tokens")
	for i := 0; i <= len(stream); i++ {
		s := NewSSE(p)
		s.Write([]byte(stream[:i]))
		s.Write([]byte(stream[i:]))
		s.End()
		if got, ok := s.Cost(); got != 23 || !ok {
			t.Fatalf("split at %d: Cost = %d, %v; want 23, true", i, got, ok)
		}
	}
	// A stream cut before its usage event has no cost; one whose last
	// event lacks its blank line still counts it.
	s := NewSSE(p)
	s.Write([]byte("data: {\"usage\":null}\n\ndata: {\"usage\":{\"total_tokens\":5}}"))
	s.End()
	if got, ok := s.Cost(); got != 5 || !ok {
		t.Errorf("unterminated last event: Cost = %d, %v; want 5, true", got, ok)
	}
	s = NewSSE(p)
	s.Write([]byte("data: " + strings.Repeat("x", maxSSELine+10) + "\n\ndata: {\"usage\":{\"total_tokens\":9}}\n\n"))
	if got, ok := s.Cost(); got != 9 || !ok {
		t.Errorf("after an overlong line: Cost = %d, %v; want 9, true", got, ok)
	}
}

func FuzzSSE(f *testing.F) {
	f.Add([]byte("data: {\"usage\":{\"total_tokens\":23}}\n\n"), 3)
	f.Add([]byte("data: a\r\ndata: b\r\n\r\n:x\n"), 1)
	p, _ := jsonpath.Parse("$.usage.total_tokens")
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		whole := NewSSE(p)
		whole.Write(b)
		whole.End()
		if split < 0 {
			split = -split
		}
		split %= len(b) + 1
		parts := NewSSE(p)
		parts.Write(b[:split])
		parts.Write(b[split:])
		parts.End()
		c1, ok1 := whole.Cost()
		c2, ok2 := parts.Cost()
		if c1 != c2 || ok1 != ok2 {
			t.Fatalf("split at %d: %d,%v vs whole %d,%v", split, c2, ok2, c1, ok1)
		}
		if ok1 && c1 > MaxAmount {
			t.Fatalf("cost %d over MaxAmount", c1)
		}
	})
}
