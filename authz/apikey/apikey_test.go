package apikey

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
)

func h256(k string) string {
	s := sha256.Sum256([]byte(k))
	return "sha256:" + hex.EncodeToString(s[:])
}
func h512(k string) string {
	s := sha512.Sum512([]byte(k))
	return "sha512:" + hex.EncodeToString(s[:])
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(file, []byte("keys:\n  - {id: f1, hash: \""+h256("from-file")+"\", subject: filed}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(&config.AuthzAPIKeys{Header: "x-api-key", File: config.FilePath(file), Keys: []config.APIKey{
		{ID: "new", Hash: h256("new-key"), Subject: "acme", Tier: "pro", Scopes: []string{"read"}, ExpiresAt: config.MustTime("2999-01-01T00:00:00Z")},
		{ID: "old", Hash: h512("old-key"), Subject: "acme", ExpiresAt: config.MustTime("2999-01-01T00:00:00Z")}, // rotation overlap
		{ID: "gone", Hash: h256("revoked-key"), Subject: "acme", Revoked: true},
		{ID: "past", Hash: h256("expired-key"), Subject: "acme", ExpiresAt: config.MustTime("2001-01-01T00:00:00Z")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tests := []struct {
		headers map[string]string
		subject string
		code    core.Code
	}{
		{map[string]string{"x-api-key": "new-key"}, "acme", core.OK},
		{map[string]string{"x-api-key": "old-key"}, "acme", core.OK},
		{map[string]string{"x-api-key": "from-file"}, "filed", core.OK},
		{map[string]string{"x-api-key": "revoked-key"}, "", core.APIKeyRevoked},
		{map[string]string{"x-api-key": "expired-key"}, "", core.APIKeyExpired},
		{map[string]string{"x-api-key": "nope"}, "", core.APIKeyUnknown},
		{map[string]string{"x-api-key": ""}, "", core.APIKeyUnknown},
		{map[string]string{"x-api-key": strings.Repeat("k", 600)}, "", core.APIKeyUnknown},
		{map[string]string{"x-api-key": "new-key,new-key"}, "", core.APIKeyUnknown},
		{map[string]string{}, "", core.CredentialsMissing},
	}
	for _, tt := range tests {
		id, code := s.Lookup(&core.Request{Headers: tt.headers}, now, nil)
		if code != tt.code || (code == core.OK && id.Subject != tt.subject) {
			t.Errorf("Lookup(%.20v) = %+v, %v; want subject %q, %v", tt.headers, id, code, tt.subject, tt.code)
		}
	}
}

func TestBadKeyFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	_ = os.WriteFile(file, []byte("keys:\n  - {id: a, hash: plaintext-key, subject: s, colour: red}\n"), 0o600)
	_, err := New(&config.AuthzAPIKeys{Header: "x-api-key", File: config.FilePath(file)})
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("New(unknown field in key file) = %v; want it named", err)
	}
	_ = os.WriteFile(file, []byte("keys:\n  - {id: a, hash: plaintext-key, subject: s}\n"), 0o600)
	_, err = New(&config.AuthzAPIKeys{Header: "x-api-key", File: config.FilePath(file)})
	if err == nil || strings.Contains(err.Error(), "plaintext-key") || !strings.Contains(err.Error(), "never the key itself") {
		t.Errorf("New(plain key as hash) = %v; want refused without echoing it", err)
	}
}
