package jsonx

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendString(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"plain /orders/42", `"plain /orders/42"`},
		{`quote " and \ backslash`, `"quote \" and \\ backslash"`},
		{"new\nline\r\ttab", `"new\nline\r\ttab"`},
		{"\x00\x1f", `"\u0000\u001f"`},
		{"<html> & co", `"<html> & co"`},
		{"é ünï 日本", `"é ünï 日本"`},
		{"bad \xff utf8", `"bad \ufffd utf8"`},
		{"js \u2028\u2029", `"js \u2028\u2029"`},
		{"del \x7f c1 \u009b[31m", `"del \u007f c1 \u009b[31m"`},
	}
	for _, tt := range tests {
		got := string(AppendString(nil, tt.in))
		if got != tt.want {
			t.Errorf("AppendString(%q) = %s; want %s", tt.in, got, tt.want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("AppendString(%q) = %s, not JSON: %v", tt.in, got, err)
		}
		if want := strings.ToValidUTF8(tt.in, "\ufffd"); back != want {
			t.Errorf("decode(AppendString(%q)) = %q; want %q", tt.in, back, want)
		}
	}
}

// FuzzAppendString: the hand-written JSON string encoder says what
// encoding/json reads back.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "\x00\x1f\n", "\xff\xfe", "\u2028", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s, not JSON: %v", s, b, err)
		}
		std, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("decode(AppendString(%q)) = %q; encoding/json says %q", s, got, want)
		}
	})
}

// TestAppendBytes: the []byte form writes the same as the string form.
func TestAppendBytes(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x7f\u009b", "\xff", "\u2028", "日本"} {
		if got, want := string(AppendBytes([]byte("x"), []byte(s))), string(AppendString([]byte("x"), s)); got != want {
			t.Errorf("AppendBytes(%q) = %s; AppendString says %s", s, got, want)
		}
	}
}
