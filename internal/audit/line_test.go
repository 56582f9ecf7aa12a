package audit

import (
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	b := logBytes(t, 1, nil)
	lines := splitLines(b)
	start, dec := string(lines[0]), string(lines[1])
	h := strings.Repeat("a", 64)
	tests := []struct {
		name, line, wantErr string
	}{
		{"start", start, ""},
		{"decision", dec, ""},
		{"empty", "", "not an audit line"},
		{"not json", "hello world" + strings.Repeat(" ", 80), "not an audit line"},
		{"no hash", `{"seq":1,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start"}`, "not an audit line"},
		{"short hash", `{"seq":1,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h[:63] + `x"}`, "not an audit line"},
		{"upper-case hash", `{"seq":1,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + strings.ToUpper(h) + `"}`, "64 lower-case hex"},
		{"bad json body", `{"seq":1,"prev":"",,"kind":"audit.start","hash":"` + h + `"}`, "invalid character"},
		{"no seq", `{"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "no seq"},
		{"seq 0", `{"seq":0,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "no seq"},
		{"no prev", `{"seq":1,"time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "no prev"},
		{"bad prev", `{"seq":2,"prev":"xyz","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "prev is not a hash"},
		{"seq 2 without prev", `{"seq":2,"prev":"","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "only seq 1"},
		{"seq 1 with prev", `{"seq":1,"prev":"` + h + `","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "only seq 1"},
		{"two hashes", `{"seq":1,"prev":"","hash":"x","time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "second hash"},
		{"negative torn", `{"seq":1,"prev":"","torn":-1,"time":"2026-01-02T03:04:05Z","kind":"audit.start","hash":"` + h + `"}`, "negative"},
		{"no kind (a caller's bug is still recorded)", `{"seq":1,"prev":"","time":"2026-01-02T03:04:05Z","hash":"` + h + `"}`, ""},
		{"bad time", `{"seq":1,"prev":"","time":"yesterday","kind":"audit.start","hash":"` + h + `"}`, "not an audit line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLine([]byte(tt.line))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ParseLine(%q) = %v; want no error", tt.line, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ParseLine(%q) = %v; want an error containing %q", tt.line, err, tt.wantErr)
			}
		})
	}
}

func TestHasherCheck(t *testing.T) {
	plain := splitLines(logBytes(t, 1, nil))[1]
	keyedLine := splitLines(logBytes(t, 1, testKey))[1]
	other := []byte("another key of at least 32 bytes!!")
	tests := []struct {
		name string
		line []byte
		key  []byte
		want bool
	}{
		{"plain with plain", plain, nil, true},
		{"plain with key", plain, testKey, false},
		{"keyed with key", keyedLine, testKey, true},
		{"keyed with plain", keyedLine, nil, false},
		{"keyed with other key", keyedLine, other, false},
		{"short", []byte("{}"), nil, false},
	}
	for _, tt := range tests {
		if got := NewHasher(tt.key).Check(tt.line); got != tt.want {
			t.Errorf("%s: Check = %v; want %v", tt.name, got, tt.want)
		}
	}
}
