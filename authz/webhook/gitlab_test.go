package webhook

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/kv"
)

func TestGitLabToken(t *testing.T) {
	const secret = "glpat-like-hook-secret"
	tests := []struct {
		name    string
		headers map[string]string
		want    core.Code
	}{
		{"the token", map[string]string{HeaderGitLabToken: secret}, core.OK},
		{"the old token during a rotation", map[string]string{HeaderGitLabToken: "old-secret"}, core.OK},
		{"no token", map[string]string{"x-gitlab-event": "Push Hook"}, core.WebhookSignatureMissing},
		{"empty token", map[string]string{HeaderGitLabToken: ""}, core.WebhookSignatureInvalid},
		{"another token", map[string]string{HeaderGitLabToken: "glpat-like-hook-secreT"}, core.WebhookSignatureInvalid},
		{"a prefix of the token", map[string]string{HeaderGitLabToken: secret[:len(secret)-1]}, core.WebhookSignatureInvalid},
		{"the token and more", map[string]string{HeaderGitLabToken: secret + secret}, core.WebhookSignatureInvalid},
		{"the token sent twice", map[string]string{HeaderGitLabToken: secret + "," + secret}, core.WebhookSignatureInvalid},
		// The token covers no body, so Envoy is not asked for one and
		// none is checked: neither a missing nor a large body matters.
		{"no body sent", map[string]string{HeaderGitLabToken: secret, "content-length": "4096"}, core.OK},
	}
	v := newVerifier(t, "name: gl\nscheme: gitlab\nsecrets: [env:NEW, env:OLD]\nmaxBodySize: 16", map[string]string{"NEW": secret, "OLD": "old-secret"}, 1, kv.NewMemory(0))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := v.Verify(context.Background(), req(tt.headers, ""), nil); got != tt.want {
				t.Errorf("Verify(%s) = %v; want %v", tt.name, got, tt.want)
			}
		})
	}
	r := req(map[string]string{HeaderGitLabToken: secret}, strings.Repeat("x", 64))
	r.PartialBody = true
	if _, code := v.Verify(context.Background(), r, nil); code != core.OK {
		t.Errorf("Verify(a body larger than maxBodySize) = %v; want allowed: the body is not verified", code)
	}
}

// TestGitLabNoReplayGuard: the token signs nothing, so the default keeps
// no replay guard (it could not hold against anyone who has the token),
// and GitLab's retries of one event pass.
func TestGitLabNoReplayGuard(t *testing.T) {
	v := newVerifier(t, "name: gl\nscheme: gitlab\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, kv.NewMemory(0))
	h := map[string]string{HeaderGitLabToken: "s", "idempotency-key": "908a6d9e-45fd-46c8-97e6-c4f350f219dd"}
	for i := 0; i < 2; i++ {
		if _, code := v.Verify(context.Background(), req(h, `{"object_kind":"push"}`), nil); code != core.OK {
			t.Fatalf("Verify(delivery %d) = %v; want allowed", i+1, code)
		}
	}
}

// TestGitLabTokenIsACredential: stripCredentials removes the token
// before the request goes upstream; the signatures of the other schemes
// reveal no secret and stay.
func TestGitLabTokenIsACredential(t *testing.T) {
	gl := newVerifier(t, "name: gl\nscheme: gitlab\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, nil)
	if got := gl.CredentialHeaders(); !slices.Equal(got, []string{HeaderGitLabToken}) {
		t.Errorf("CredentialHeaders(gitlab) = %q; want [%s]", got, HeaderGitLabToken)
	}
	gh := newVerifier(t, "name: gh\nscheme: github\nsecrets: [env:S]", map[string]string{"S": "s"}, 1, nil)
	if got := gh.CredentialHeaders(); got != nil {
		t.Errorf("CredentialHeaders(github) = %q; want none", got)
	}
}
