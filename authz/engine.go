package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/authz/apikey"
	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/authz/jwt"
	"github.com/gatehouse/gatehouse/authz/mtls"
	"github.com/gatehouse/gatehouse/authz/webhook"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/kv"
	"github.com/gatehouse/gatehouse/internal/routematch"
)

// engine is one config compiled for deciding: immutable once built and
// swapped whole on reload, so a Check sees one config from start to end.
type engine struct {
	version     string
	realm       string
	defaultTier string
	routes      *routematch.Resolver[*route]
	unmatched   unmatchedPolicy
	unknown     *route // route ids Envoy sent that are not configured
	nomatch     *route // no route id and no route matched

	jwt      *jwt.Verifier
	apiKeys  *apikey.Store
	mtls     *mtls.Trust
	webhooks map[string]*webhook.Verifier
	keySets  map[string]*jwt.KeySet
	now      func() time.Time
}

// compileOptions are what compiling needs besides the config.
type compileOptions struct {
	// keySets are the serving engine's, reused when unchanged.
	keySets map[string]*jwt.KeySet
	store   kv.Store
	client  *http.Client
	log     *slog.Logger
	audit   audit.Recorder
	now     func() time.Time
	// allowUnresolved accepts unresolved secrets (validate --skip-secrets).
	allowUnresolved bool
}

func compile(cfg *config.Config, o compileOptions) (*engine, error) {
	az := cfg.Authz
	if az == nil {
		return nil, errors.New("authz: the config has no authz: section")
	}
	if o.now == nil {
		o.now = time.Now
	}
	e := &engine{
		version:     cfg.Version,
		realm:       az.Realm,
		defaultTier: az.DefaultTier,
		webhooks:    map[string]*webhook.Verifier{},
		keySets:     map[string]*jwt.KeySet{},
		now:         o.now,
		unknown:     &route{id: routeUnknown, counters: counters{route: routeUnknown}},
		nomatch:     &route{id: routeUnmatched, counters: counters{route: routeUnmatched}},
	}
	var errs config.Errors
	addErr := func(prefix config.Path, err error) {
		var es config.Errors
		var fe *config.FieldError
		switch {
		case errors.As(err, &es):
			errs = append(errs, es...)
		case errors.As(err, &fe):
			c := *fe
			c.Path = prefix + "." + fe.Path
			errs = append(errs, &c)
		default:
			errs.Add(prefix, "%v", err)
		}
	}
	if az.JWT != nil {
		v, err := jwt.New(az.JWT, jwt.Options{KeySets: o.keySets, Client: o.client, Logger: o.log, Audit: o.audit, Now: o.now})
		if err != nil {
			addErr("authz.jwt", err)
		} else {
			e.jwt = v
			e.keySets = v.KeySets()
		}
	}
	if az.APIKeys != nil {
		s, err := apikey.New(az.APIKeys)
		if err != nil {
			addErr("authz.apiKeys", err)
		}
		e.apiKeys = s
	}
	m, err := mtls.NewTrust(az.MTLS)
	if err != nil {
		addErr("authz.mtls", err)
		m, _ = mtls.NewTrust(nil)
	}
	e.mtls = m
	for i := range az.Webhooks {
		w := &az.Webhooks[i]
		v, err := webhook.New(w, webhook.Options{Store: o.store, Now: o.now, AllowUnresolved: o.allowUnresolved})
		if err != nil {
			addErr(config.Path("authz.webhooks").Index(i), err)
			continue
		}
		e.webhooks[w.Name] = v
	}
	e.unmatched = newUnmatched(&az.Unmatched)
	if len(errs) > 0 {
		return nil, errs
	}
	byID := make(map[string]*route, len(cfg.Routes))
	for i := range cfg.Routes {
		rt := e.compileRoute(&cfg.Routes[i])
		byID[rt.id] = rt
	}
	e.routes = routematch.NewResolver(cfg.Routes, byID, contract.AuthzUnknownRoute)
	if len(errs) > 0 {
		return nil, errs
	}
	return e, nil
}

// unmatchedPolicy decides requests no route matched, per host.
type unmatchedPolicy struct {
	def   config.AuthzAction
	rules []unmatchedRule
}

type unmatchedRule struct {
	patterns []string
	action   config.AuthzAction
}

func newUnmatched(u *config.Unmatched) unmatchedPolicy {
	p := unmatchedPolicy{def: u.Action}
	for _, h := range u.Hosts {
		p.rules = append(p.rules, unmatchedRule{patterns: h.Hosts, action: h.Action})
	}
	return p
}

func (p *unmatchedPolicy) action(host string) config.AuthzAction {
	host = strings.ToLower(host)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		host = host[:i]
	}
	for _, r := range p.rules {
		for _, pat := range r.patterns {
			if hostMatches(pat, host) {
				return r.action
			}
		}
	}
	return p.def
}

func hostMatches(pat, host string) bool {
	switch {
	case pat == "*":
		return true
	case strings.HasPrefix(pat, "*"):
		return len(host) > len(pat)-1 && strings.HasSuffix(host, pat[1:])
	case strings.HasSuffix(pat, "*"):
		return len(host) > len(pat)-1 && strings.HasPrefix(host, pat[:len(pat)-1])
	}
	return pat == host
}

// decision is the outcome of one Check.
type decision struct {
	route    *route
	outcome  outcome
	code     core.Code // the reason; for would_deny, the reason it would deny
	identity *core.Identity
	tier     string
	// webhook is the source checked, and webhookCode its result, for the
	// webhook audit line.
	webhook     string
	webhookCode core.Code
	// failed is the method whose credential was refused (challenges).
	failed string
}

// lookup finds the route of a request: by the route id Envoy carries,
// else by matching host, path, method and headers as Envoy would. An id
// not configured here is denied (contract.AuthzUnknownRoute).
func (e *engine) lookup(r *core.Request, ex core.Explainer) (*route, bool) {
	rt, by, id, _ := e.routes.Resolve(func() *routematch.Request {
		return &routematch.Request{Host: r.Host, Path: r.Path, Method: r.Method, Headers: r}
	}, r.RouteID)
	switch by {
	case routematch.ByID:
		if ex != nil {
			ex.Step("route %q from context_extensions[%q]", id, contract.ContextExtensionRoute)
		}
		return rt, true
	case routematch.UnknownID:
		if ex != nil {
			ex.Step("route id %q from Envoy is not configured here", id)
		}
		return e.unknown, false
	case routematch.NoMatch:
		if ex != nil {
			ex.Step("no route id from Envoy, and no route matches %s %s (host %q)", r.Method, r.PathOnly(), r.Host)
		}
		return e.nomatch, false
	}
	if ex != nil {
		ex.Step("no route id from Envoy; route %q matches %s %s (host %q)", id, r.Method, r.PathOnly(), r.Host)
	}
	return rt, true
}

// decide runs the policy for r. ex, when not nil, is told every step.
func (e *engine) decide(ctx context.Context, r *core.Request, ex core.Explainer) decision {
	rt, found := e.lookup(r, ex)
	d := decision{route: rt}
	switch {
	case !found && rt == e.nomatch && e.unmatched.action(r.Host) == config.ActionAllow:
		if ex != nil {
			ex.Step("unmatched requests to host %q are allowed (authz.unmatched)", r.Host)
		}
		return e.finish(d, core.UnmatchedAllowed, nil, ex)
	case !found:
		return e.finish(d, core.NoRoute, nil, ex)
	case !rt.hasAuthz:
		if ex != nil {
			ex.Step("route %q has no authz: section; denied (fail closed)", rt.id)
		}
		return e.finish(d, core.NoPolicy, nil, ex)
	case rt.public:
		if ex != nil {
			ex.Step("route %q is public", rt.id)
		}
		return e.finish(d, core.Public, nil, ex)
	}
	if !rt.sourceAllowed(r) {
		if ex != nil {
			ex.Step("client address %q is not in the route's sourceCIDRs", r.SourceAddress)
		}
		return e.finish(d, core.SourceNotAllowed, nil, ex)
	}
	id, code := e.authenticate(ctx, rt, r, &d, ex)
	if code != core.OK {
		return e.finish(d, code, id, ex)
	}
	if id == nil {
		if ex != nil {
			ex.Step("no credential; the route is optional, so the caller is anonymous")
		}
		return e.finish(d, core.Anonymous, nil, ex)
	}
	if code := rt.requirements(id, ex); code != core.OK {
		return e.finish(d, code, id, ex)
	}
	return e.finish(d, core.OK, id, ex)
}

// authenticate runs the route's methods: with mode any the first
// credential present decides (a refused credential is not passed over
// for another), with mode all every method must pass. It returns a nil
// identity and core.OK for an optional route without credentials.
func (e *engine) authenticate(ctx context.Context, rt *route, r *core.Request, d *decision, ex core.Explainer) (*core.Identity, core.Code) {
	if rt.all {
		return e.authenticateAll(ctx, rt, r, d, ex)
	}
	missing := core.CredentialsMissing
	for _, m := range rt.methods {
		id, code := m.authenticate(ctx, r, ex)
		e.noteWebhook(m, d, code)
		switch code {
		case core.OK:
			if ex != nil {
				ex.Step("authenticated by %s: subject %q", m.name(), id.Subject)
			}
			return id, core.OK
		case core.CredentialsMissing, core.MTLSMissing, core.WebhookSignatureMissing:
			if ex != nil {
				ex.Step("%s: no credential", m.name())
			}
			if len(rt.methods) == 1 {
				missing = code
			}
			continue
		}
		d.failed = m.name()
		if ex != nil {
			ex.Step("%s credential refused: %s", m.name(), code)
		}
		return nil, code
	}
	if rt.optional {
		return nil, core.OK
	}
	if ex != nil {
		ex.Step("no credential accepted by the route was sent")
	}
	return nil, missing
}

func (e *engine) authenticateAll(ctx context.Context, rt *route, r *core.Request, d *decision, ex core.Explainer) (*core.Identity, core.Code) {
	ids := make([]*core.Identity, 0, len(rt.methods))
	for _, m := range rt.methods {
		id, code := m.authenticate(ctx, r, ex)
		e.noteWebhook(m, d, code)
		if code != core.OK {
			d.failed = m.name()
			if ex != nil {
				ex.Step("mode all: %s did not pass: %s", m.name(), code)
			}
			return nil, code
		}
		if ex != nil {
			ex.Step("mode all: %s passed: subject %q", m.name(), id.Subject)
		}
		ids = append(ids, id)
	}
	return merge(ids), core.OK
}

func (e *engine) noteWebhook(m method, d *decision, code core.Code) {
	if w, ok := m.(*webhookMethod); ok {
		d.webhook, d.webhookCode = w.v.Name(), code
	}
}

// merge combines the identities of mode all: the first method's subject,
// issuer and tier; the SPIFFE id of whichever has one; every scope.
func merge(ids []*core.Identity) *core.Identity {
	out := &core.Identity{}
	names := make([]string, 0, len(ids))
	for _, id := range ids {
		names = append(names, id.Method)
		if out.Subject == "" {
			out.Subject = id.Subject
		}
		if out.Issuer == "" {
			out.Issuer = id.Issuer
		}
		if out.SPIFFEID == "" {
			out.SPIFFEID = id.SPIFFEID
		}
		if out.Tier == "" {
			out.Tier = id.Tier
		}
		if out.Claims == nil {
			out.Claims = id.Claims
		}
		if out.KeyID == "" {
			out.KeyID = id.KeyID
		}
		for _, s := range id.Scopes {
			if !out.HasScope(s) {
				out.Scopes = append(out.Scopes, s)
			}
		}
	}
	out.Method = strings.Join(names, "+")
	return out
}

// finish settles outcome and tier, applying shadow mode.
func (e *engine) finish(d decision, code core.Code, id *core.Identity, ex core.Explainer) decision {
	d.code = code
	if code.Allowed() {
		d.outcome = allow
	} else {
		d.outcome = deny
		if d.route != nil && d.route.shadow {
			d.outcome = wouldDeny
			if ex != nil {
				ex.Step("shadow mode: the request would be denied (%s) but is allowed", code)
			}
		}
	}
	if code.Allowed() || d.outcome == wouldDeny {
		d.identity = id
		switch {
		case id == nil:
			d.tier = contract.AnonymousTier
		case id.Tier != "":
			d.tier = id.Tier
		case d.route != nil && d.route.defaultTier != "":
			d.tier = d.route.defaultTier
		default:
			d.tier = e.defaultTier
		}
	} else if id != nil {
		// Kept for the audit line (who was refused), never for headers.
		d.identity = id
	}
	if ex != nil {
		ex.Step("decision: %s (%s), tier %q", d.outcome, code, d.tier)
	}
	return d
}

func (d *decision) String() string {
	return fmt.Sprintf("%s %s route=%s", d.outcome, d.code, d.route.id)
}
