package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// The hand-written encoder must say exactly what encoding/json would
// decode into the same Event.
func TestAppendEventRoundTrip(t *testing.T) {
	full := event(3)
	full.SPIFFEID, full.Tier, full.Node, full.Version, full.Detail = "spiffe://td/ns/a", "pro", "node-1", "v42", "routes[0]: bad\n\"x\""
	tests := []Event{
		{Time: time.Unix(0, 0), Kind: KindStart},
		full,
		{Time: time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600)), Kind: KindXDSNack, Node: "n", Version: "3", Detail: "NACK"},
	}
	for _, e := range tests {
		b := append([]byte{'{'}, appendEvent(nil, &e)...)
		b = append(b, '}')
		var got Event
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendEvent(%+v) = %s, not JSON: %v", e, b, err)
		}
		want := e
		want.Time = e.Time.UTC().Truncate(time.Microsecond)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decode(appendEvent()) differs (-want +got):\n%s", diff)
		}
	}
}

func TestFieldCaps(t *testing.T) {
	long := strings.Repeat("é", maxField) // 2 bytes per rune
	e := Event{Time: time.Unix(1, 0), Kind: KindDecision, Path: long, Subject: long, Detail: strings.Repeat("x", 3*maxDetail)}
	b := append([]byte{'{'}, appendEvent(nil, &e)...)
	var got Event
	if err := json.Unmarshal(append(b, '}'), &got); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"path": got.Path, "subject": got.Subject} {
		if len(v) > maxField || !utf8.ValidString(v) || !strings.HasSuffix(v, "…") {
			t.Errorf("%s: %d bytes, valid %v; want at most %d valid bytes ending with …", name, len(v), utf8.ValidString(v), maxField)
		}
	}
	if len(got.Detail) > maxDetail {
		t.Errorf("detail: %d bytes; want at most %d", len(got.Detail), maxDetail)
	}
}

// TestCanonicalForm checks the rule docs/audit.md gives third parties,
// implemented here from the text alone: drop the last 75 bytes, append
// '}', hash; prev is the previous line's hash.
func TestCanonicalForm(t *testing.T) {
	b := logBytes(t, 5, nil)
	prev := ""
	for i, line := range splitLines(b) {
		body := string(line[:len(line)-75]) + "}"
		sum := sha256.Sum256([]byte(body))
		want := hex.EncodeToString(sum[:])
		var m struct {
			Seq  int    `json:"seq"`
			Prev string `json:"prev"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if m.Hash != want || m.Prev != prev || m.Seq != i+1 {
			t.Fatalf("line %d: seq %d prev %.8s hash %.8s; want seq %d prev %.8s hash %.8s", i+1, m.Seq, m.Prev, m.Hash, i+1, prev, want)
		}
		if !strings.HasSuffix(string(line), `,"hash":"`+want+`"}`) {
			t.Fatalf("line %d does not end with its hash member", i+1)
		}
		prev = m.Hash
	}
}
