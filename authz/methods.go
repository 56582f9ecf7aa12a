package authz

import (
	"context"
	"time"

	"github.com/gatehouse/gatehouse/authz/apikey"
	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/authz/jwt"
	"github.com/gatehouse/gatehouse/authz/mtls"
	"github.com/gatehouse/gatehouse/authz/webhook"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// method authenticates a request by one means. The verifiers live in
// their own packages (jwt, apikey, mtls, webhook) and know nothing of
// routes; each adapter below fits one of them to this interface, which
// the engine owns. The table of methods is built in one place,
// methodsFor, from the route's config: there is no registry.
type method interface {
	// name is the auth method (contract.AuthMethod*).
	name() string
	// authenticate returns the caller's identity and core.OK, or
	// core.CredentialsMissing when the request carries no credential of
	// this kind, or the reason the credential it carries was refused.
	authenticate(ctx context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code)
	// credentialHeaders are the headers that carry the credential, for
	// stripCredentials.
	credentialHeaders() []string
}

type jwtMethod struct {
	v       *jwt.Verifier
	issuers map[string]bool // nil: any configured issuer
}

func (m *jwtMethod) name() string { return contract.AuthMethodJWT }

func (m *jwtMethod) authenticate(ctx context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	token, code := m.v.Extract(r)
	if code != core.OK {
		return nil, code
	}
	vt, code := m.v.Verify(ctx, token, ex)
	if code != core.OK {
		return nil, code
	}
	if m.issuers != nil && !m.issuers[vt.IssuerName] {
		if ex != nil {
			ex.Step("issuer %s is not one this route accepts", vt.IssuerName)
		}
		return nil, core.TokenIssuerNotAllowed
	}
	return &vt.Identity, core.OK
}

func (m *jwtMethod) credentialHeaders() []string { return m.v.StripHeaders() }

type apiKeyMethod struct {
	s   *apikey.Store
	now func() time.Time
}

func (m *apiKeyMethod) name() string { return contract.AuthMethodAPIKey }

func (m *apiKeyMethod) authenticate(_ context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	return m.s.Lookup(r, m.now(), ex)
}

func (m *apiKeyMethod) credentialHeaders() []string { return []string{m.s.Header()} }

type mtlsMethod struct{ a *mtls.Authenticator }

func (m *mtlsMethod) name() string { return contract.AuthMethodMTLS }

func (m *mtlsMethod) authenticate(_ context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	id, code := m.a.Identify(r, ex)
	if code == core.CredentialsMissing {
		return nil, core.MTLSMissing
	}
	return id, code
}

func (m *mtlsMethod) credentialHeaders() []string { return []string{mtls.HeaderXFCC} }

type webhookMethod struct{ v *webhook.Verifier }

func (m *webhookMethod) name() string { return contract.AuthMethodWebhook }

func (m *webhookMethod) authenticate(ctx context.Context, r *core.Request, ex core.Explainer) (*core.Identity, core.Code) {
	return m.v.Verify(ctx, r, ex)
}

func (m *webhookMethod) credentialHeaders() []string { return m.v.CredentialHeaders() }

// methodsFor builds the methods a route accepts, in a fixed order (jwt,
// apiKey, mtls, webhook): the method table of the engine.
func (e *engine) methodsFor(a *config.RouteAuthz) []method {
	var out []method
	if a.JWT != nil && e.jwt != nil {
		m := &jwtMethod{v: e.jwt}
		if len(a.JWT.Issuers) > 0 {
			m.issuers = map[string]bool{}
			for _, n := range a.JWT.Issuers {
				m.issuers[n] = true
			}
		}
		out = append(out, m)
	}
	if a.APIKey != nil && e.apiKeys != nil {
		out = append(out, &apiKeyMethod{s: e.apiKeys, now: e.now})
	}
	if a.MTLS != nil {
		out = append(out, &mtlsMethod{a: e.mtls.Authenticator(a.MTLS)})
	}
	if a.Webhook != "" && e.webhooks[a.Webhook] != nil {
		out = append(out, &webhookMethod{v: e.webhooks[a.Webhook]})
	}
	return out
}
