package authz

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/authz/internal/core"
)

// TestReasonCodesDocumented keeps the reason code table of docs/authz.md
// and core's closed set in step: names, statuses, RFC 6750 errors and
// public reasons.
func TestReasonCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/authz.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## Reason codes")
	end := strings.Index(doc[start:], "\n## ")
	section := doc[start : start+end]
	var got []core.Info
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(cells[i]), "`") }
		st, err := strconv.Atoi(cell(2))
		if err != nil {
			t.Fatalf("bad status in %q", line)
		}
		if st == 200 {
			st = 0
		}
		got = append(got, core.Info{Name: cell(1), Status: st, BearerError: cell(3), Public: cell(4)})
	}
	var want []core.Info
	for _, c := range core.Codes() {
		want = append(want, c.Info())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/authz.md reason codes differ from core (-code +docs):\n%s", diff)
	}
}
