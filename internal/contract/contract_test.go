package contract

import (
	"strings"
	"testing"
)

func TestHeaderSafe(t *testing.T) {
	for s, want := range map[string]bool{
		"":                         true,
		"alice@example.com":        true,
		"spiffe://mesh/ns/a/sa/b":  true,
		"a\r\nx-gatehouse-tier: 1": false,
		"tab\there":                false,
		"müller":                   false,
		"del\x7f":                  false,
		strings.Repeat("a", 1024):  true,
		strings.Repeat("a", 1025):  false,
	} {
		if got := HeaderSafe(s); got != want {
			t.Errorf("HeaderSafe(%q) = %v; want %v", s, got, want)
		}
	}
}
