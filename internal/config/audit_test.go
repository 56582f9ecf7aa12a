package config

import (
	"strings"
	"testing"
)

func TestAuditValidate(t *testing.T) {
	t.Setenv("AUDIT_KEY_OK", strings.Repeat("k", 32))
	t.Setenv("AUDIT_KEY_SHORT", "short")
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", "", ""},
		{"file only", "file: /var/log/gatehouse/audit.log\nstdout: false", ""},
		{"keyed", "chainKey: env:AUDIT_KEY_OK", ""},
		{"no sink", "stdout: false", "audit: has no sink"},
		{"short key", "chainKey: env:AUDIT_KEY_SHORT", "audit.chainKey: env:AUDIT_KEY_SHORT holds 5 bytes; use at least 32"},
		{"literal key", "chainKey: hunter2hunter2hunter2hunter2hunter2", "a literal secret is not allowed"},
		{"bad sync", "sync: sometimes", `"sometimes" is not an fsync policy; use always|interval|never`},
		{"zero interval", "syncInterval: 0s", "audit.syncInterval: must be more than 0s"},
		{"tiny maxSize", "maxSize: 1KiB", "audit.maxSize: 1KiB is too small"},
		{"buffer", "bufferSize: 0", "audit.bufferSize: must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := "apiVersion: gatehouse/v1\naudit:\n"
			for _, l := range strings.Split(tt.yaml, "\n") {
				y += "  " + l + "\n"
			}
			if tt.yaml == "" {
				y = "apiVersion: gatehouse/v1\n"
			}
			cfg, err := LoadBytes("t.yaml", []byte(y), LoadOptions{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load(%q) = %v; want no error", tt.yaml, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Load(%q) = %v; want an error containing %q", tt.yaml, err, tt.wantErr)
			}
			if err == nil && (cfg.Audit.Sync != AuditSyncInterval || cfg.Audit.SyncInterval.D().String() != "1s") {
				t.Errorf("defaults: sync %q every %s; want interval every 1s", cfg.Audit.Sync, cfg.Audit.SyncInterval)
			}
		})
	}
}

func TestResolveAuditKey(t *testing.T) {
	t.Setenv("K_OK", strings.Repeat("x", 40))
	t.Setenv("K_SHORT", "x")
	for ref, wantErr := range map[string]string{
		"env:K_OK":      "",
		"env:K_SHORT":   "at least 32 bytes",
		"env:K_MISSING": "not set",
		"literal-key":   "literal secret",
	} {
		k, err := ResolveAuditKey(ref)
		switch {
		case wantErr == "" && (err != nil || len(k) != 40):
			t.Errorf("ResolveAuditKey(%q) = %d bytes, %v; want 40 bytes", ref, len(k), err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("ResolveAuditKey(%q) = %v; want an error containing %q", ref, err, wantErr)
		}
	}
}
