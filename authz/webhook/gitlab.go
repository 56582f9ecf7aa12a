package webhook

import (
	"crypto/sha256"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/internal/config"
)

// HeaderGitLabToken carries the secret token of a GitLab webhook: the
// configured secret itself, in clear, on every delivery. It signs
// nothing: not the body, not a time, not the delivery's id
// (X-Gitlab-Event-UUID, Idempotency-Key). Whoever reads one delivery can
// send any other.
const HeaderGitLabToken = "x-gitlab-token"

// parseGitLab reads the token as its SHA-256, to be compared with the
// digests of the configured secrets: equal-length digests, compared in
// constant time, tell a timing observer nothing of the token's length or
// content.
func parseGitLab(r *core.Request) (delivery, core.Code) {
	t, ok := r.Headers[HeaderGitLabToken]
	if !ok {
		return delivery{}, core.WebhookSignatureMissing
	}
	sum := sha256.Sum256([]byte(t))
	return delivery{token: sum[:]}, core.OK
}

// CredentialHeaders are the request headers that carry a secret of the
// source, for stripCredentials: GitLab's token is the secret itself, while
// the signatures of the other schemes reveal nothing of theirs.
func (v *Verifier) CredentialHeaders() []string {
	if v.scheme == config.SchemeGitLab {
		return []string{HeaderGitLabToken}
	}
	return nil
}
