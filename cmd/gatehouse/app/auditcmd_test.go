package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
)

// writeAuditLog writes events through the real writer into dir/audit.log,
// rotating at 4KiB, and returns the files in chain order.
func writeAuditLog(t *testing.T, dir string, key string, events []audit.Event) []string {
	t.Helper()
	yaml := "apiVersion: gatehouse/v1\naudit:\n  file: audit.log\n  stdout: false\n  maxSize: 4KiB\n  maxBackups: 0\n"
	if key != "" {
		t.Setenv("GATEHOUSE_TEST_AUDIT_KEY", key)
		yaml += "  chainKey: env:GATEHOUSE_TEST_AUDIT_KEY\n"
	}
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(cfg.Audit, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		l.Record(e)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sampleEvents(n int) []audit.Event {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var out []audit.Event
	for i := range n {
		e := audit.Event{Time: base.Add(time.Duration(i) * time.Minute), Kind: audit.KindDecision,
			ID: "dec-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), RequestID: "req-" + string(rune('a'+i%26)),
			Route: []string{"orders", "payments"}[i%2], Decision: []string{"allow", "deny", "would_deny"}[i%3],
			Reason: []string{"ok", "jwt_expired", "scope_missing"}[i%3], Subject: []string{"alice", "bob", "spiffe://prod/ns/web"}[i%3],
			Method: "POST", Path: "/v1/orders?token=SECRET"}
		out = append(out, e)
	}
	return append(out, audit.Event{Time: base.Add(time.Hour), Kind: audit.KindConfigReject, Version: "v9", Detail: "routes[0].id: bad\n\x1b[31mred"})
}

func runMain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), args, &stdout, &stderr)
	code := 0
	var exit *ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.Code
	case err != nil:
		t.Fatalf("Main(%q) = %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestAuditVerifyCmd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	files := writeAuditLog(t, dir, "", sampleEvents(60))
	if len(files) < 3 {
		t.Fatalf("want rotated files; got %v", files)
	}
	out, _, code := runMain(t, append([]string{"audit", "verify"}, files...)...)
	if code != 0 || !strings.HasPrefix(out, "ok: "+strconv.Itoa(len(files))+" files, 63 lines, 1 chain, 0 gaps") || !strings.Contains(out, "closed: yes") {
		t.Fatalf("verify = %d\n%s\nwant 0 and an ok summary", code, out)
	}
	// A quoted glob is expanded in order too.
	if out2, _, code := runMain(t, "audit", "verify", filepath.Join(dir, "audit*.log")); code != 0 || out2 != out {
		t.Errorf("verify with a glob = %d\n%s\nwant the same as with the files listed", code, out2)
	}

	// Tamper: change a decision in the second file.
	b, _ := os.ReadFile(files[1])
	if err := os.WriteFile(files[1], bytes.Replace(b, []byte(`"deny"`), []byte(`"allow"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = runMain(t, append([]string{"audit", "verify"}, files...)...)
	if code != 1 || !strings.HasPrefix(out, "TAMPERED "+files[1]+":") || !strings.Contains(out, "hash mismatch") {
		t.Errorf("verify(tampered) = %d\n%s\nwant 1 and TAMPERED %s:<line>: hash mismatch", code, out, files[1])
	}

	_, stderr, code := runMain(t, "audit", "verify", filepath.Join(dir, "missing.log"))
	if code != 2 || !strings.Contains(stderr, "missing.log") {
		t.Errorf("verify(missing) = %d %q; want 2 naming the file", code, stderr)
	}
	if _, _, code := runMain(t, "audit", "verify", "--bogus", files[0]); code != 2 {
		t.Errorf("verify --bogus = %d; want 2", code)
	}
}

func TestAuditVerifyCmdKey(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	key := "k3y-0f-at-least-32-bytes-for-hmac-sha256"
	files := writeAuditLog(t, t.TempDir(), key, sampleEvents(5))
	t.Setenv("VERIFY_KEY", key)
	if out, _, code := runMain(t, append([]string{"audit", "verify", "--key", "env:VERIFY_KEY"}, files...)...); code != 0 {
		t.Errorf("verify --key = %d\n%s\nwant 0", code, out)
	}
	if out, _, code := runMain(t, append([]string{"audit", "verify"}, files...)...); code != 1 || !strings.Contains(out, "pass --key") {
		t.Errorf("verify without key = %d\n%s\nwant 1 with a hint to pass --key", code, out)
	}
	t.Setenv("SHORT_KEY", "short")
	if _, stderr, code := runMain(t, append([]string{"audit", "verify", "--key", "env:SHORT_KEY"}, files...)...); code != 2 || !strings.Contains(stderr, "32 bytes") {
		t.Errorf("verify with a short key = %d %q; want 2", code, stderr)
	}
	if _, stderr, code := runMain(t, append([]string{"audit", "verify", "--key", key}, files...)...); code != 2 || strings.Contains(stderr, key) {
		t.Errorf("verify with a literal key = %d %q; want 2 without echoing it", code, stderr)
	}
}

func TestAuditQueryCmd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	files := writeAuditLog(t, dir, "", sampleEvents(60))
	glob := filepath.Join(dir, "audit*.log")
	tests := []struct {
		name  string
		args  []string
		want  int    // matching lines (json output)
		check string // substring of the output
	}{
		{"all", nil, 63, ""},
		{"decision", []string{"--decision", "deny"}, 20, `"decision":"deny"`},
		{"two decisions", []string{"--decision", "deny", "--decision", "would_deny"}, 40, ""},
		{"subject wildcard", []string{"--subject", "spiffe://prod/*"}, 20, ""},
		{"route and reason", []string{"--route", "orders", "--reason", "jwt_expired"}, 10, ""},
		{"id", []string{"--id", "dec-c"}, 1, `"id":"dec-c"`},
		{"request id", []string{"--request-id", "req-c"}, 3, ""},
		{"kind", []string{"--kind", "config.reject"}, 1, `"version":"v9"`},
		{"start and stop", []string{"--kind", "audit.*"}, 2, ""},
		{"since", []string{"--since", "2026-03-01T12:50:00Z"}, 13, ""}, // 10 events, the reject, start and stop (written now)
		{"until", []string{"--until", "2026-03-01T12:10:00Z"}, 10, ""},
		{"range", []string{"--since", "2026-03-01T12:10:00Z", "--until", "2026-03-01T12:20:00Z", "--decision", "allow"}, 3, ""},
		{"limit", []string{"--limit", "5"}, 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := runMain(t, append(append([]string{"audit", "query"}, tt.args...), glob)...)
			if code != 0 || stderr != "" {
				t.Fatalf("query %q = %d %q", tt.args, code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if out == "" {
				lines = nil
			}
			if len(lines) != tt.want || !strings.Contains(out, tt.check) {
				t.Fatalf("query %q printed %d lines; want %d containing %q\n%s", tt.args, len(lines), tt.want, tt.check, out)
			}
			for _, l := range lines {
				if _, err := audit.ParseLine([]byte(l)); err != nil || strings.Contains(l, "SECRET") {
					t.Fatalf("query printed %q: %v; want whole audit lines without query strings", l, err)
				}
			}
		})
	}
	out, _, _ := runMain(t, "audit", "query", "--count", "--decision", "allow", glob)
	if out != "20\n" {
		t.Errorf("query --count = %q; want 20", out)
	}
	out, _, _ = runMain(t, "audit", "query", "-o", "table", "--kind", "config.reject", "--kind", "authz.decision", "--limit", "2", files[len(files)-1])
	if !strings.HasPrefix(out, "TIME ") || strings.Contains(out, "\x1b") || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
		t.Errorf("table =\n%s\nwant a header and 2 rows, no escape characters", out)
	}
	for _, bad := range [][]string{{"--since", "yesterday"}, {"--until", "-1h"}, {"-o", "xml"}} {
		if _, stderr, code := runMain(t, append(append([]string{"audit", "query"}, bad...), glob)...); code != 2 || stderr == "" {
			t.Errorf("query %q = %d %q; want 2 with a message", bad, code, stderr)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"", time.Time{}, false},
		{"2026-03-01T10:00:00Z", time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), false},
		{"2026-03-01T10:00:00.5+01:00", time.Date(2026, 3, 1, 9, 0, 0, 5e8, time.UTC), false},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"1.5d", now.Add(-36 * time.Hour), false},
		{"-1h", time.Time{}, true},
		{"soon", time.Time{}, true},
		{"d", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseWhen(tt.in, now)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
