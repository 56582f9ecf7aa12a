package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		rules   Rules
		wantErr error
		pointer string
	}{
		{name: "object", in: `{"name":"Rex","status":"sold"}`},
		{name: "scalars", in: ` [1, -0.5e+3, "x\u00e9", true, false, null, {}, []] `},
		{name: "two texts", in: `{"name":"Rex","status":"sold"} {"x":1}`, wantErr: ErrTrailingData},
		{name: "two texts no space", in: `{"a":1}{"b":2}`, wantErr: ErrTrailingData},
		{name: "garbage after", in: `{"a":1} x`, wantErr: ErrTrailingData},
		{name: "number then garbage", in: `1x`, wantErr: ErrTrailingData},
		{name: "two texts allowed", in: `{"name":"Rex"} {"x":1}`, rules: Rules{AllowTrailingData: true}},
		{name: "duplicate", in: `{"name":"Rex","status":"lost","status":"sold"}`, wantErr: ErrDuplicateName, pointer: "/status"},
		{name: "duplicate by escape", in: `{"status":1,"st\u0061tus":2}`, wantErr: ErrDuplicateName, pointer: "/status"},
		{name: "duplicate nested", in: `{"a":[{"x":1},{"y":1,"y":2}]}`, wantErr: ErrDuplicateName, pointer: "/a/1/y"},
		{name: "duplicate key with slash", in: `{"a/b~":{"k":1,"k":1}}`, wantErr: ErrDuplicateName, pointer: "/a~1b~0/k"},
		{name: "invalid utf8 names merge", in: "{\"\xff\":1,\"\xfe\":2}", rules: Rules{AllowInvalidUTF8: true}, wantErr: ErrDuplicateName},
		{name: "invalid utf8 name", in: "{\"\xff\":1}", wantErr: ErrInvalidUTF8},
		{name: "invalid utf8 value", in: "{\"role\":\"admin\xff\"}", wantErr: ErrInvalidUTF8},
		{name: "invalid utf8 after an escape", in: "[\"\\n\xc3\"]", wantErr: ErrInvalidUTF8},
		{name: "overlong slash", in: "[\"\xc0\xaf\"]", wantErr: ErrInvalidUTF8},
		{name: "encoded surrogate", in: "[\"\xed\xa0\x80\"]", wantErr: ErrInvalidUTF8},
		{name: "truncated sequence", in: "[\"\xe2\x82\"]", wantErr: ErrInvalidUTF8},
		{name: "valid multibyte", in: "{\"caf\xc3\xa9\":\"\xe2\x82\xac \xf0\x9f\x90\x95\\n\"}"},
		{name: "invalid utf8 allowed", in: "{\"role\":\"admin\xff\"}", rules: Rules{AllowInvalidUTF8: true}},
		{name: "lone surrogates merge", in: `{"\ud800":1,"\udc00":2}`, wantErr: ErrDuplicateName},
		{name: "same name in sibling objects", in: `{"a":{"k":1},"b":{"k":1},"k":1}`},
		{name: "same name after a nested close", in: `{"a":{"b":1},"b":2}`},
		{name: "duplicates allowed", in: `{"s":1,"s":2}`, rules: Rules{AllowDuplicateNames: true}},
		{name: "many members", in: manyMembers(2000, false)},
		{name: "many members one duplicate", in: manyMembers(2000, true), wantErr: ErrDuplicateName, pointer: "/k7"},
		{name: "empty", in: ``, wantErr: ErrSyntax},
		{name: "unterminated", in: `{"a":1`, wantErr: ErrSyntax},
		{name: "bad literal", in: `{"a":tru}`, wantErr: ErrSyntax},
		{name: "control char", in: "\"a\x01\"", wantErr: ErrSyntax},
		{name: "mismatched", in: `[1}`, wantErr: ErrSyntax},
		{name: "trailing comma", in: `[1,]`, wantErr: ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check([]byte(tt.in), tt.rules)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Check(%.60q) = %v; want %v", tt.in, err, tt.wantErr)
			}
			if tt.pointer != "" {
				var se *StrictError
				if !errors.As(err, &se) || se.Pointer != tt.pointer {
					t.Errorf("Check(%.60q) pointer = %+v; want %s", tt.in, err, tt.pointer)
				}
			}
		})
	}
}

func manyMembers(n int, dup bool) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + itoa(i) + `":1`)
	}
	if dup {
		b.WriteString(`,"k7":2`)
	}
	b.WriteString("}")
	return b.String()
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestCheckErrorNamesNoValue: the message says the rule and the place,
// never a value from the body.
func TestCheckErrorNamesNoValue(t *testing.T) {
	err := Check([]byte(`{"status":"secret-value","status":"other"} {"x":"secret2"}`), Rules{})
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Check = %v; want an error naming no value", err)
	}
}

// FuzzCheck: Check agrees with encoding/json on what is one valid JSON
// text, and with a token walk on which objects name a member twice.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1} {"b":2}`, `{"a":1,"a":2}`, `[{"x":{"y":1,"y":2}}]`, `{"\u0061":1,"a":2}`, "{\"\xff\":1,\"\xfe\":2}", `1 2`, `"x"`, `{"a":[1,2,{"b":null}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		strictErr := Check(in, Rules{AllowInvalidUTF8: true})
		lax := Check(in, Rules{AllowDuplicateNames: true, AllowInvalidUTF8: true})
		if valid := json.Valid(in); valid != (lax == nil) {
			t.Fatalf("Check(%q, duplicates allowed) = %v; json.Valid says %v", in, lax, valid)
		}
		if lax != nil {
			if strictErr == nil {
				t.Fatalf("Check(%q) = nil; the lax check says %v", in, lax)
			}
			if Check(in, Rules{}) == nil {
				t.Fatalf("Check(%q, strictest) = nil; the lax check says %v", in, lax)
			}
			return
		}
		// In a valid text any byte above ASCII is in a string: the text is
		// UTF-8 exactly when its strings are.
		if err := Check(in, Rules{AllowDuplicateNames: true}); (err == nil) != utf8.Valid(in) || (err != nil && !errors.Is(err, ErrInvalidUTF8)) {
			t.Fatalf("Check(%q, UTF-8 required) = %v; utf8.Valid says %v", in, err, utf8.Valid(in))
		}
		dup := hasDuplicate(t, in)
		if dup != errors.Is(strictErr, ErrDuplicateName) || (!dup && strictErr != nil) {
			t.Fatalf("Check(%q) = %v; token walk says duplicate=%v", in, strictErr, dup)
		}
		// A valid text stays valid, with anything after it, when trailing
		// data is allowed.
		if err := Check(append(bytes.Clone(in), " x"...), Rules{AllowTrailingData: true, AllowDuplicateNames: true, AllowInvalidUTF8: true}); err != nil {
			t.Fatalf("Check(%q + junk, trailing allowed) = %v", in, err)
		}
	})
}

// hasDuplicate walks the tokens of a valid text, tracking each object's
// decoded names.
func hasDuplicate(t *testing.T, in []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	type obj struct {
		names  map[string]bool
		isObj  bool
		expect bool // next string token is a name
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatalf("token walk of a valid text: %v", err)
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.isObj {
					top.expect = true
				}
				stack = append(stack, &obj{names: map[string]bool{}, isObj: d == '{', expect: d == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if top != nil && top.isObj {
			if top.expect {
				s := tok.(string)
				if top.names[s] {
					return true
				}
				top.names[s] = true
				top.expect = false
			} else {
				top.expect = true
			}
		}
	}
}

// BenchmarkCheck64KiB: the strict check of a 64 KiB body of many small
// objects (its cost before validation), against json.Valid for scale.
func BenchmarkCheck64KiB(b *testing.B) {
	body := benchBody(64 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(body, Rules{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONValid64KiB(b *testing.B) {
	body := benchBody(64 << 10)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !json.Valid(body) {
			b.Fatal("invalid")
		}
	}
}

func benchBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for i := 0; b.Len() < n-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":` + itoa(i) + `,"name":"Customer ` + itoa(i) + `","active":true,"tags":["a","b"],"address":{"street":"Long St","city":"Springfield","zip":"12345"},"note":"x\u00e9y"}`)
	}
	b.WriteString(`],"next":null}`)
	return b.Bytes()
}
