package server

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTruncateKeepsUTF8: a NACK detail cut to maxDetail stays valid
// UTF-8 whatever character straddles the limit.
func TestTruncateKeepsUTF8(t *testing.T) {
	for pad := range 4 {
		s := strings.Repeat("a", pad) + strings.Repeat("é€😀", maxDetail)
		got := truncate(s)
		if !utf8.ValidString(got) {
			t.Errorf("truncate(%d-byte detail, %d) = invalid UTF-8 (pad %d)", len(s), maxDetail, pad)
		}
		if len(got) > maxDetail+len("…") || !strings.HasSuffix(got, "…") {
			t.Errorf("truncate(...) = %d bytes ending %q; want at most %d bytes ending in …", len(got), got[len(got)-4:], maxDetail+len("…"))
		}
	}
	if got := truncate("short"); got != "short" {
		t.Errorf("truncate(%q) = %q; want it unchanged", "short", got)
	}
}
