package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gatehouse/gatehouse/authz/jwt"
	"github.com/gatehouse/gatehouse/internal/config"
)

// PathJWKSRefresh is the admin endpoint that fetches every issuer's
// remote key set now (POST only).
const PathJWKSRefresh = "/authz/jwks/refresh"

// AdminRoutes implements component.AdminRoutes: POST /authz/jwks/refresh.
func (s *Server) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		http.MethodPost + " " + PathJWKSRefresh: http.HandlerFunc(s.serveJWKSRefresh),
	}
}

// RefreshResult is one issuer's answer to a forced refresh.
type RefreshResult struct {
	Issuer string `json:"issuer"`
	OK     bool   `json:"ok"`
	// Keys is how many keys the issuer has after the refresh (the cached
	// ones when it failed).
	Keys  int    `json:"keys"`
	Error string `json:"error,omitempty"`
}

// RefreshKeys fetches every issuer's remote key set now, concurrently,
// and waits for the results. A key the issuer removed stops verifying at
// once, and the tokens it verified leave the verified-token cache; a
// failed fetch leaves the cached keys serving, as a scheduled one would.
func (s *Server) RefreshKeys(ctx context.Context) []RefreshResult {
	e := s.engine.Load()
	if e == nil {
		return nil
	}
	out := make([]RefreshResult, 0, len(e.keySets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ks := range e.keySets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := ks.Refresh(ctx)
			h := ks.Health()
			r := RefreshResult{Issuer: h.Issuer, OK: err == nil, Keys: h.Keys}
			if err != nil {
				r.Error = err.Error()
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b RefreshResult) int { return strings.Compare(a.Issuer, b.Issuer) })
	return out
}

// KickKeys implements component.KeyRefresher: on SIGHUP every remote key
// set is fetched again in the background, without waiting for its
// refresh interval.
func (s *Server) KickKeys() {
	e := s.engine.Load()
	if e == nil || len(e.keySets) == 0 {
		return
	}
	for _, ks := range e.keySets {
		ks.Kick()
	}
	if s.deps.Logger != nil {
		s.deps.Logger.Info("jwks refresh requested", "trigger", "SIGHUP", "key_sets", len(e.keySets))
	}
}

// serveJWKSRefresh answers 200 when every remote key set was fetched and
// kept, 502 when an issuer's endpoint failed (its cached keys serve on),
// with each issuer's result as JSON.
func (s *Server) serveJWKSRefresh(w http.ResponseWriter, r *http.Request) {
	res := s.RefreshKeys(r.Context())
	code := http.StatusOK
	for _, x := range res {
		if !x.OK {
			code = http.StatusBadGateway
		}
	}
	if s.deps.Logger != nil {
		s.deps.Logger.Info("jwks refresh forced", "trigger", "admin", "key_sets", len(res), "status", code)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Issuers []RefreshResult `json:"issuers"`
	}{res})
}

// ProbeKeys fetches every remote key set of cfg once, discovery included,
// as the first fetch of serve would, and returns what serve would refuse
// (an unreachable endpoint, a plain http:// jwks_uri from an https
// issuer, a response over maxJWKSSize, a set without a usable key) as
// errors at the issuer's config path. It is `gatehouse validate
// --fetch-keys`; nothing keeps running.
func ProbeKeys(ctx context.Context, cfg *config.Config) error {
	if cfg.Authz == nil || cfg.Authz.JWT == nil {
		return nil
	}
	client := newFetchClient()
	var errs config.Errors
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range cfg.Authz.JWT.Issuers {
		ic := &cfg.Authz.JWT.Issuers[i]
		p := config.Path("authz.jwt.issuers").Index(i)
		switch {
		case ic.JWKSURL != "":
			p = p.Field("jwksURL")
		case ic.Discovery:
			p = p.Field("discovery")
		default:
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := jwt.NewKeySet(ic, jwt.Options{Client: client}).Probe(ctx); err != nil {
				mu.Lock()
				errs.Add(p, "fetched as serve would, and refused: %v", err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs
	}
	return nil
}
