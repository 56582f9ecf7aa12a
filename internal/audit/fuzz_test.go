package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fixedLog builds a deterministic log of n events plus start and stop
// lines through a sink, without a Logger (usable outside a test).
func fixedLog(n int, key []byte) []byte {
	m, _ := newMetrics(nil, func() float64 { return 0 })
	var buf bytes.Buffer
	s := newSink("stdout", &buf, nil, m, slog.New(slog.DiscardHandler))
	h := NewHasher(key)
	s.add(appendEvent(nil, &Event{Time: time.Unix(1e9, 0), Kind: KindStart, Detail: "new chain"}), 0, h, m)
	for i := range n {
		e := event(i)
		s.add(appendEvent(nil, &e), uint64(i%3/2), h, m)
	}
	s.add(appendEvent(nil, &Event{Time: time.Unix(2e9, 0), Kind: KindStop, Detail: "closed"}), 0, h, m)
	s.flush()
	return buf.Bytes()
}

// FuzzParseLine: any bytes give a line or an error, never a panic, and a
// line that parses keeps the chain invariants.
func FuzzParseLine(f *testing.F) {
	for _, l := range splitLines(fixedLog(2, nil)) {
		f.Add(l)
	}
	f.Add([]byte(`{"seq":1,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + strings.Repeat("0", 64) + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLine(b)
		NewHasher(nil).Check(b)
		NewHasher(testKey).Check(b)
		if err != nil {
			return
		}
		if l.Seq == 0 || len(l.Hash) != 64 || (l.Prev == "") != (l.Seq == 1) || l.Torn < 0 {
			t.Fatalf("ParseLine(%q) = %+v, which breaks the chain invariants", b, l)
		}
	})
}

// FuzzVerify: any bytes as a log give a report, never a panic or an
// error; and a report without problem has counted its lines.
func FuzzVerify(f *testing.F) {
	f.Add(fixedLog(3, nil))
	f.Add([]byte("garbage\n\n{}\n"))
	f.Add(append(fixedLog(1, nil), fixedLog(2, nil)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify([]Source{memSource("f", b)}, nil)
		if err != nil {
			t.Fatalf("Verify = %v", err)
		}
		if rep.Problem == nil && len(bytes.TrimSpace(b)) > 0 && rep.Lines == 0 {
			t.Fatalf("Verify(%q) found no problem and no line", b)
		}
	})
}

// FuzzVerifyDetectsEdit replaces any span of a valid log with any bytes:
// verify must report it, except for the edits the chain cannot see by
// design — whole lines removed from the start or the end, or the final
// newline (docs/audit.md, "What verify can and cannot prove").
func FuzzVerifyDetectsEdit(f *testing.F) {
	f.Add(uint16(10), uint8(1), []byte("x"), false)
	f.Add(uint16(300), uint8(0), []byte("\n"), true)
	f.Add(uint16(0), uint8(200), []byte{}, false)
	f.Add(uint16(500), uint8(3), []byte(`"deny"`), true)
	logs := map[bool][]byte{false: fixedLog(4, nil), true: fixedLog(4, testKey)}
	f.Fuzz(func(t *testing.T, pos uint16, del uint8, ins []byte, keyedLog bool) {
		orig := logs[keyedLog]
		p := int(pos) % (len(orig) + 1)
		end := min(p+int(del), len(orig))
		b := append(append(bytes.Clone(orig[:p]), ins...), orig[end:]...)
		if bytes.Equal(b, orig) || invisibleEdit(orig, b) {
			return
		}
		var keys [][]byte
		if keyedLog {
			keys = [][]byte{testKey}
		}
		rep, err := Verify([]Source{memSource("f", b)}, keys)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Problem == nil {
			t.Fatalf("replacing [%d:%d] with %q went unnoticed:\n%s", p, end, ins, b)
		}
	})
}

// invisibleEdit reports whether b is orig with whole lines removed from
// its start or end (or its final newline).
func invisibleEdit(orig, b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if bytes.HasPrefix(orig, b) && (b[len(b)-1] == '\n' || orig[len(b)] == '\n') {
		return true
	}
	if bytes.HasSuffix(orig, b) && orig[len(orig)-len(b)-1] == '\n' {
		return true
	}
	return false
}

// FuzzWriterLine: whatever a caller puts in an event, the writer's line
// parses, verifies and says what the event said (within the field caps).
func FuzzWriterLine(f *testing.F) {
	f.Add("authz.decision", "d-1", "/orders/42", "alice", "detail\nline", int64(87), int64(1e9), uint64(0))
	f.Add("", "", "", "", "", int64(-1), int64(-1<<62), uint64(7))
	f.Add("x\xff", "\u2028", "/a\"b", "spiffe://td/ns/a", "\x00", int64(1<<62), int64(1<<62), uint64(1))
	f.Fuzz(func(t *testing.T, kind, id, path, subject, detail string, latency, unix int64, gap uint64) {
		e := Event{Time: time.Unix(unix, 0), Kind: Kind(kind), ID: id, Path: path, Subject: subject, Detail: detail, LatencyUS: latency}
		h := NewHasher(testKey)
		prev := link{seq: 9}
		copy(prev.hash[:], strings.Repeat("a", hashHexLen))
		line, _ := appendLine(nil, chainFields{seq: 10, prev: &prev, gap: gap}, appendEvent(nil, &e), h)
		line = line[:len(line)-1]
		l, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(line of %+v) = %v\n%s", e, err, line)
		}
		if !h.Check(line) {
			t.Fatalf("the writer's line does not verify:\n%s", line)
		}
		valid := func(s string, n int) string {
			std, _ := json.Marshal(truncate(s, n))
			var v string
			_ = json.Unmarshal(std, &v)
			return v
		}
		if l.Seq != 10 || l.Gap != gap || string(l.Kind) != valid(kind, maxField) || l.ID != valid(id, maxField) ||
			l.Path != valid(path, maxField) || l.Detail != valid(detail, maxDetail) || l.LatencyUS != latency {
			t.Fatalf("line %s\nparsed as %+v; want the event %+v", line, l, e)
		}
	})
}
