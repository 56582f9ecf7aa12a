package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// rehash recomputes a line's hash without a key, as an attacker without
// the chain key can.
func rehash(line []byte) []byte {
	body := append(bytes.Clone(line[:len(line)-suffixLen]), '}')
	sum := sha256.Sum256(body)
	body = append(body[:len(body)-1], hashPrefix...)
	body = append(body, hex.EncodeToString(sum[:])...)
	return append(body, '"', '}')
}

func hashOf(line []byte) string {
	return string(line[len(line)-suffixLen+len(hashPrefix) : len(line)-2])
}

func join(lines [][]byte) []byte {
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		b = append(b, '\n')
	}
	return b
}

func replace(line []byte, old, new string) []byte {
	return []byte(strings.Replace(string(line), old, new, 1))
}

// TestVerifyTampering edits a log of 10 lines (audit.start, events d-0 to
// d-7 on lines 2-9, audit.stop) in each way an attacker or an accident
// could, with and without a chain key, and checks the first problem
// reported.
func TestVerifyTampering(t *testing.T) {
	type edit func(ls [][]byte) [][]byte
	tests := []struct {
		name string
		edit edit
		// wantLine 0 means the edit cannot be detected (and the test says
		// why in wantMsg).
		wantLine int
		wantMsg  string
		// keyed is the outcome with a chain key when it differs.
		keyedLine int
		keyedMsg  string
	}{
		{name: "intact", edit: func(ls [][]byte) [][]byte { return ls }},
		{
			name:     "edit a field",
			edit:     func(ls [][]byte) [][]byte { ls[4] = replace(ls[4], `"allow"`, `"deny"`); return ls },
			wantLine: 5, wantMsg: "hash mismatch: the line was changed",
			keyedLine: 5, keyedMsg: "hash mismatch: the line was changed",
		},
		{
			name:     "edit a field and recompute its hash",
			edit:     func(ls [][]byte) [][]byte { ls[4] = rehash(replace(ls[4], `"allow"`, `"deny"`)); return ls },
			wantLine: 5, wantMsg: "changed line: its hash was recomputed",
			keyedLine: 5, keyedMsg: "plain SHA-256",
		},
		{
			name:     "delete a line",
			edit:     func(ls [][]byte) [][]byte { return append(ls[:4], ls[5:]...) },
			wantLine: 5, wantMsg: "removed 1 line: seq 6 follows seq 4",
		},
		{
			name:     "delete three lines",
			edit:     func(ls [][]byte) [][]byte { return append(ls[:3], ls[6:]...) },
			wantLine: 4, wantMsg: "removed 3 lines: seq 7 follows seq 3",
		},
		{
			name:     "swap two lines",
			edit:     func(ls [][]byte) [][]byte { ls[4], ls[5] = ls[5], ls[4]; return ls },
			wantLine: 5, wantMsg: "lines swapped: seq 6 comes before seq 5",
		},
		{
			name: "move a line later",
			edit: func(ls [][]byte) [][]byte {
				moved := ls[3]
				ls = append(ls[:3:3], ls[4:]...)
				return append(ls[:7:7], append([][]byte{moved}, ls[7:]...)...)
			},
			wantLine: 4, wantMsg: "lines reordered: expected seq 4 after audit.log:3, found seq 5; seq 4 is at audit.log:8",
		},
		{
			name: "insert a forged line",
			edit: func(ls [][]byte) [][]byte {
				forged := replace(ls[4], `"d-3"`, `"d-x"`)
				return append(ls[:5:5], append([][]byte{forged}, ls[5:]...)...)
			},
			wantLine: 6, wantMsg: "hash mismatch",
		},
		{
			name: "insert a forged line with a valid hash",
			edit: func(ls [][]byte) [][]byte {
				// seq 6 after line 5, prev = its hash: a perfect link.
				forged := replace(ls[5], `"d-4"`, `"d-x"`)
				forged = rehash(forged)
				return append(ls[:5:5], append([][]byte{forged}, ls[5:]...)...)
			},
			wantLine: 6, wantMsg: "inserted line: seq 6 is not part of the chain; the line after it (audit.log:7) continues from audit.log:5",
			keyedLine: 6, keyedMsg: "plain SHA-256",
		},
		{
			name: "replay a line",
			edit: func(ls [][]byte) [][]byte {
				return append(ls[:5:5], append([][]byte{ls[4]}, ls[5:]...)...)
			},
			wantLine: 6, wantMsg: "inserted line: seq 5 claims to follow audit.log:4",
		},
		{
			name:     "truncate the last line",
			edit:     func(ls [][]byte) [][]byte { ls[9] = ls[9][:len(ls[9])/2]; return ls },
			wantLine: 10, wantMsg: "incomplete line",
		},
		{
			name:     "edit the last line",
			edit:     func(ls [][]byte) [][]byte { ls[9] = replace(ls[9], `"closed"`, `"closed!"`); return ls },
			wantLine: 10, wantMsg: "hash mismatch",
		},
		{
			name: "append a forged line",
			edit: func(ls [][]byte) [][]byte {
				forged := replace(ls[8], `"seq":9`, `"seq":11`)
				forged = replace(forged, `"prev":"`+hashOf(ls[7]), `"prev":"`+hashOf(ls[9]))
				return append(ls, rehash(forged))
			},
			wantLine: 0, wantMsg: "without a key, a well-forged line at the end verifies",
			keyedLine: 11, keyedMsg: "plain SHA-256",
		},
		{
			name: "join two lines",
			edit: func(ls [][]byte) [][]byte {
				ls[4] = append(append(ls[4], ' '), ls[5]...)
				return append(ls[:5], ls[6:]...)
			},
			wantLine: 5, wantMsg: "not an audit line",
		},
		{
			name:     "insert an empty line",
			edit:     func(ls [][]byte) [][]byte { return append(ls[:5:5], append([][]byte{{}}, ls[5:]...)...) },
			wantLine: 6, wantMsg: "not an audit line",
		},
		{
			name:     "declare a torn write that is not there",
			edit:     func(ls [][]byte) [][]byte { ls[5] = rehash(replace(ls[5], `,"time"`, `,"torn":5,"time"`)); return ls },
			wantLine: 6, wantMsg: "declares 5 bytes of failed writes before it, but there are none",
			keyedLine: 6, keyedMsg: "plain SHA-256",
		},
		{
			name:     "delete the last line",
			edit:     func(ls [][]byte) [][]byte { return ls[:9] },
			wantLine: 0, wantMsg: "only an outside record of the head (gatehouse_audit_last_seq) shows a removed tail",
		},
		{
			name:     "delete the first line",
			edit:     func(ls [][]byte) [][]byte { return ls[1:] },
			wantLine: 0, wantMsg: "looks like a set whose older files were pruned; reported as a chain continuing from files not given",
		},
	}
	for _, keyedRun := range []bool{false, true} {
		var key []byte
		if keyedRun {
			key = testKey
		}
		base := splitLines(logBytes(t, 8, key))
		if len(base) != 10 {
			t.Fatalf("base log has %d lines; want 10", len(base))
		}
		for _, tt := range tests {
			name := tt.name
			if keyedRun {
				name += " (keyed)"
			}
			t.Run(name, func(t *testing.T) {
				ls := make([][]byte, len(base))
				for i := range base {
					ls[i] = bytes.Clone(base[i])
				}
				b := join(tt.edit(ls))
				if tt.name == "truncate the last line" {
					b = b[:len(b)-1]
				}
				var keys [][]byte
				if keyedRun {
					keys = [][]byte{key}
				}
				rep := verifyBytes(t, b, keys...)
				wantLine, wantMsg := tt.wantLine, tt.wantMsg
				if keyedRun && tt.keyedLine != 0 {
					wantLine, wantMsg = tt.keyedLine, tt.keyedMsg
				}
				if wantLine == 0 {
					if rep.Problem != nil {
						t.Fatalf("Verify = %v; want no problem", rep.Problem)
					}
					switch tt.name {
					case "delete the last line":
						if rep.Stopped {
							t.Errorf("Verify says the log was closed; want it to say the last line is not audit.stop")
						}
					case "delete the first line":
						if rep.ChainCount != 1 || rep.Chains[0].Seq != 2 {
							t.Errorf("chains %+v; want one, continuing at seq 2", rep.Chains)
						}
					}
					return
				}
				if rep.Problem == nil {
					t.Fatalf("Verify found no problem; want line %d: %s", wantLine, wantMsg)
				}
				if rep.Problem.Line != wantLine || !strings.Contains(rep.Problem.Msg, wantMsg) {
					t.Fatalf("Verify = %v; want audit.log:%d: …%s…", rep.Problem, wantLine, wantMsg)
				}
			})
		}
	}
}

func TestVerifyKeyHints(t *testing.T) {
	plain := logBytes(t, 2, nil)
	keyedLog := logBytes(t, 2, testKey)
	tests := []struct {
		name    string
		log     []byte
		keys    [][]byte
		wantMsg string
	}{
		{"keyed log without key", keyedLog, nil, "pass --key"},
		{"plain log with a key", plain, [][]byte{testKey}, "plain SHA-256"},
		{"keyed log with another key", keyedLog, [][]byte{[]byte("some other key of 32 bytes or more")}, "written with a key not given"},
	}
	for _, tt := range tests {
		rep := verifyBytes(t, tt.log, tt.keys...)
		if rep.Problem == nil || rep.Problem.Line != 1 || !strings.Contains(rep.Problem.Msg, tt.wantMsg) {
			t.Errorf("%s: Verify = %v; want line 1: …%s…", tt.name, rep.Problem, tt.wantMsg)
		}
	}
}

// Several runs on standard output, concatenated as a log collector would:
// each run is its own chain.
func TestVerifyConcatenatedChains(t *testing.T) {
	b := append(logBytes(t, 3, nil), logBytes(t, 2, nil)...)
	rep := verifyBytes(t, b)
	mustOK(t, rep)
	if rep.ChainCount != 2 || rep.Lines != 9 {
		t.Errorf("%d chains, %d lines; want 2 chains, 9 lines", rep.ChainCount, rep.Lines)
	}
	// A new chain must begin with audit.start.
	ls := splitLines(b)
	ls[5] = rehash(replace(ls[5], `"kind":"audit.start"`, `"kind":"authz.decision"`))
	if rep := verifyBytes(t, join(ls)); rep.Problem == nil || !strings.Contains(rep.Problem.Msg, "can only begin with an audit.start") {
		t.Errorf("Verify = %v; want a chain without audit.start reported", rep.Problem)
	}
}

func TestVerifyReadError(t *testing.T) {
	if _, err := Verify(Files("/nonexistent/audit.log"), nil); err == nil {
		t.Fatal("Verify(missing file) = nil error; want one")
	}
}
