package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestCheckCommand runs `gatehouse check` on the embedded example config
// with its demo credentials.
func TestCheckCommand(t *testing.T) {
	tok, err := os.ReadFile("../../../examples/demo/demo-token.jwt")
	if err != nil {
		t.Fatal(err)
	}
	bearer := "authorization: Bearer " + strings.TrimSpace(string(tok))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"demo token", []string{"check", "--route", "hello", "-H", bearer},
			0, []string{"decision: allow", "authenticated by jwt", "x-gatehouse-subject: demo-user", "x-gatehouse-tier: pro"}},
		{"demo API key, route by matching", []string{"check", "--path", "/anything", "-H", "x-api-key: gh_demo_apikey_0123456789abcdef"},
			0, []string{`route "hello" matches GET /anything`, "decision: allow", "subject:  demo-partner"}},
		{"no credential", []string{"check", "--route", "hello"},
			1, []string{"decision: deny", "reason:   credentials_missing", "status:   401", `www-authenticate: Bearer realm="gatehouse", APIKey realm="gatehouse"`}},
		{"tampered token", []string{"check", "--route", "hello", "-H", bearer + "x", "--json"},
			1, []string{"reason:   token_signature_invalid", `"deniedResponse"`}},
		{"bad header flag", []string{"check", "-H", "no-colon"}, 2, []string{}},
		// Usage errors must not exit 1, which means "denied" to a script.
		{"unknown flag", []string{"check", "--rout", "hello"}, 2, []string{}},
		{"stray argument", []string{"check", "hello"}, 2, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Main(context.Background(), tt.args, &out, &errOut)
			code := 0
			var exit *ExitError
			if errors.As(err, &exit) {
				code = exit.Code
			} else if err != nil {
				t.Fatalf("Main(%v) = %v", tt.args, err)
			}
			if code != tt.wantCode {
				t.Fatalf("Main(%v) exit %d; want %d\n%s%s", tt.args, code, tt.wantCode, out.String(), errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("Main(%v) output lacks %q:\n%s", tt.args, w, out.String())
				}
			}
		})
	}
}
