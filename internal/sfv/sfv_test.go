package sfv

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"tokens", `"tokens"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"tab\there", `"tab?here"`},
		{"héllo", `"h??llo"`},
		{"\x7f", `"?"`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %s; want %s", tc.in, got, tc.want)
		}
	}
}
