package authz

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse/gatehouse/authz/internal/core"
	"github.com/gatehouse/gatehouse/authz/jwt"
	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/kv"
)

// Server serves ext_authz.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	deps    component.Deps
	metrics *metrics
	client  *http.Client
	ids     idGen

	engine atomic.Pointer[engine]
	// mu serialises Prepare/commit/Close, which start and stop key sets.
	mu     sync.Mutex
	closed bool
}

// New builds the ext_authz server and compiles cfg, so that the returned
// server decides at once (the app's first Prepare then reuses what was
// built, key sets included).
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	if deps.KV == nil {
		deps.KV = kv.NewMemory(0)
	}
	if deps.Audit == nil {
		deps.Audit = discard{}
	}
	s := &Server{
		deps:    deps,
		metrics: newMetrics(),
		client:  newFetchClient(),
	}
	s.ids.init()
	commit, err := s.Prepare(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.metrics.register(deps.Metrics, s); err != nil {
		return nil, fmt.Errorf("authz: register metrics: %w", err)
	}
	commit()
	return s, nil
}

// newFetchClient is the client of JWKS and discovery fetches: bounded in
// time, and in the redirects it follows (checkRedirect). Each key set caps
// the size of what it reads on top of it.
func newFetchClient() *http.Client {
	return &http.Client{Timeout: time.Minute, CheckRedirect: checkRedirect}
}

// maxRedirects bounds the redirects a JWKS or discovery fetch follows.
const maxRedirects = 3

// checkRedirect lets a JWKS or discovery fetch follow a few redirects but
// never from https to plain http: keys fetched in the clear could be
// swapped by anyone on the path, and they decide who is authenticated.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("authz: stopped after %d redirects", maxRedirects)
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("authz: refusing a redirect from https to %s", req.URL.Redacted())
	}
	return nil
}

// Validate compiles the authz part of cfg (key files, JWKS documents, PEM
// keys, trust bundles, API key files, webhook secrets) without starting
// anything, and returns its problems with their config paths: errors, or
// only warnings (config.Errors) for trust bundles that are expiring or
// expired, which validate prints and serve logs at every load.
func Validate(cfg *config.Config) error {
	if cfg.Authz == nil {
		return nil
	}
	e, err := compile(cfg, compileOptions{store: kv.NewMemory(1), allowUnresolved: true})
	if err != nil {
		return err
	}
	var warns config.Errors
	now := time.Now()
	for i, b := range e.mtls.Bundles(now) {
		if p := b.Problem(now); p != "" {
			field := "bundle"
			if cfg.Authz.MTLS.TrustDomains[i].BundleFile != "" {
				field = "bundleFile"
			}
			warns.Warn(config.Path("authz.mtls.trustDomains").Index(i).Field(field), "%s", p)
		}
	}
	if len(warns) > 0 {
		return warns
	}
	return nil
}

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentAuthz }

// Prepare implements component.Component: it compiles cfg, reusing the
// serving engine's key sets whose config did not change (no refetch, no
// lost cache), and returns the commit that swaps the engine in, starts
// new key sets and stops those no longer used.
func (s *Server) Prepare(cfg *config.Config) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var old map[string]*jwt.KeySet
	if e := s.engine.Load(); e != nil {
		old = e.keySets
	}
	e, err := compile(cfg, compileOptions{
		keySets: old,
		store:   s.deps.KV,
		client:  s.client,
		log:     s.deps.Logger,
		audit:   s.deps.Audit,
	})
	if err != nil {
		return nil, err
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return
		}
		prev := s.engine.Swap(e)
		for k, ks := range e.keySets {
			if old[k] != ks {
				ks.Start()
			}
		}
		if prev != nil {
			for k, ks := range prev.keySets {
				if e.keySets[k] != ks {
					ks.Stop()
				}
			}
		}
	}, nil
}

// Ready implements component.Component: every issuer's key set must have
// loaded once (afterwards a failing JWKS endpoint is served from cache and
// shows in gatehouse_authz_jwks_up, not in readiness, so that an
// identity provider's outage does not take every replica out). A trust
// bundle that is expiring or has expired is reported as an
// *admin.Warning: every replica holds the same bundle, so taking them out
// of service would deny every route, not only those that need it.
func (s *Server) Ready(ctx context.Context) error {
	e := s.engine.Load()
	if e == nil {
		return errors.New("authz: no config")
	}
	var bad, warn []string
	if e.jwt != nil {
		for _, h := range e.jwt.Health() {
			if !h.Loaded {
				msg := "jwt issuer " + h.Issuer + ": key set not loaded"
				if h.LastError != "" {
					msg += ": " + h.LastError
				}
				bad = append(bad, msg)
			}
		}
	}
	now := time.Now()
	for _, b := range e.mtls.Bundles(now) {
		if p := b.Problem(now); p != "" {
			warn = append(warn, p)
		}
	}
	switch {
	case len(bad) > 0:
		for _, w := range warn {
			bad = append(bad, "warning: "+w)
		}
		return errors.New(strings.Join(bad, "; "))
	case len(warn) > 0:
		return &admin.Warning{Msg: strings.Join(warn, "; ")}
	}
	return nil
}

// WaitReady waits until every key set has loaded or ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	e := s.engine.Load()
	if e == nil {
		return errors.New("authz: no config")
	}
	for _, ks := range e.keySets {
		if err := ks.WaitLoaded(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close implements component.Component: it stops the key sets' fetching.
func (s *Server) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if e := s.engine.Load(); e != nil {
		for _, ks := range e.keySets {
			ks.Stop()
		}
	}
	return nil
}

// record counts and audits a decision.
func (s *Server) record(e *engine, d *decision, r *core.Request, id, reqID string, start time.Time) {
	lat := time.Since(start)
	d.route.counters.inc(s.metrics, d.outcome, d.code)
	s.metrics.observers[d.outcome].Observe(lat.Seconds())
	ev := audit.Event{
		Kind:          audit.KindDecision,
		ID:            id,
		RequestID:     reqID,
		Route:         d.route.id,
		Decision:      d.outcome.String(),
		Reason:        d.code.String(),
		ClientAddr:    r.SourceAddress,
		Method:        r.Method,
		Path:          r.PathOnly(),
		PolicyVersion: e.version,
		LatencyUS:     lat.Microseconds(),
		Tier:          d.tier,
	}
	if len(ev.Path) > 2048 {
		ev.Path = ev.Path[:2048]
	}
	if d.identity != nil {
		ev.AuthMethod = d.identity.Method
		ev.Subject = d.identity.Subject
		ev.Issuer = d.identity.Issuer
		ev.SPIFFEID = d.identity.SPIFFEID
	}
	s.deps.Audit.Record(ev)
	if d.webhook != "" {
		wo := outcomeAllow
		if d.webhookCode != core.OK {
			wo = outcomeDeny
		}
		s.deps.Audit.Record(audit.Event{
			Kind:          audit.KindWebhook,
			ID:            id,
			RequestID:     reqID,
			Route:         d.route.id,
			Decision:      wo,
			Reason:        d.webhookCode.String(),
			AuthMethod:    "webhook",
			Subject:       d.webhook,
			ClientAddr:    r.SourceAddress,
			Method:        r.Method,
			Path:          ev.Path,
			PolicyVersion: e.version,
		})
	}
}

// idGen makes decision ids: a random per-process prefix and a counter, so
// ids are unique across replicas without coordination and cost one small
// allocation.
type idGen struct {
	prefix [6]byte
	n      atomic.Uint64
}

func (g *idGen) init() {
	var seed [8]byte
	_, _ = rand.Read(g.prefix[:])
	_, _ = rand.Read(seed[:])
	g.n.Store(binary.BigEndian.Uint64(seed[:]) >> 16)
}

func (g *idGen) next() string {
	var raw [14]byte
	copy(raw[:6], g.prefix[:])
	binary.BigEndian.PutUint64(raw[6:], g.n.Add(1))
	var out [28]byte
	hex.Encode(out[:], raw[:])
	return string(out[:])
}

type discard struct{}

func (discard) Record(audit.Event) {}
