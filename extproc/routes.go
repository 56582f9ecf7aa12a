package extproc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/openapi"
	"github.com/gatehouse/gatehouse/extproc/redact"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/jsonx"
	"github.com/gatehouse/gatehouse/internal/routematch"
)

// runtime is one compiled config: what a stream needs, immutable, swapped
// whole on reload so that a stream keeps the config it started with.
type runtime struct {
	routes  map[string]*route
	resolve *routematch.Resolver[*route]
	// grpcResolve matches the streams of proxyless gRPC clients that
	// carry no route id against the routes of grpc listeners only: an
	// RPC's path must not land on an HTTP route.
	grpcResolve *routematch.Resolver[*route]
	timeout     time.Duration
	// none is the route of streams that matched nothing: no processors.
	none *route
	// budgets are the routes' cost budgets, by route id (the budget stage).
	budgets map[string]*budgetPolicy
}

// route is a route's compiled processors, in their fixed order.
type route struct {
	id      string
	hygiene *hygiene.Policy
	// security are the hygiene security headers in wire form, built once
	// and shared (read-only) by every answer.
	security []*corev3.HeaderValueOption
	contract *openapi.Contract
	oaBody   bool // validate request bodies
	oaResp   bool // validate responses (report-only)
	redactor *redact.Redactor
	idem     *idemPolicy
	limit    int64
	reject   bool // onLargeBody: reject
	// json are the departures from strict JSON the route's bodies may take.
	json  jsonx.Rules
	needs config.ExtProcNeeds
	m     *routeMetrics
	// pre and post are the views of the route that each ext_proc stage
	// runs (stages.go); nil on the views themselves.
	pre, post *route
	// correlate adds the request's ids and the security headers to the
	// answers this view makes itself, where hygiene ran in another stage.
	correlate bool
	// lastLog rate-limits the route's report-only log lines.
	lastLog atomic.Int64
}

// processors reports whether the route runs any processor.
func (r *route) processors() bool {
	return r.hygiene != nil || r.contract != nil || r.redactor != nil || r.idem != nil
}

// compile turns cfg into a runtime. m may be nil (validation only). The
// problems found are config.Errors with field paths.
func compile(ctx context.Context, cfg *config.Config, m *metrics) (*runtime, error) {
	rt := &runtime{routes: map[string]*route{}, budgets: map[string]*budgetPolicy{}, timeout: config.Defaults[config.ExtProc]().MessageTimeout.D()}
	if cfg.ExtProc != nil {
		rt.timeout = cfg.ExtProc.MessageTimeout.D()
	}
	rt.none = &route{id: noRoute}
	if m != nil {
		rt.none.m = m.forRoute(noRoute)
	}
	var errs config.Errors
	contracts := map[[32]byte]*openapi.Contract{} // one compile per distinct document
	for i := range cfg.Routes {
		cr := &cfg.Routes[i]
		p := config.Path("routes").Index(i).Field("extproc")
		r := &route{id: cr.ID, needs: cr.ExtProcNeeds(cfg)}
		rt.routes[cr.ID] = r
		if m != nil {
			r.m = m.forRoute(cr.ID)
		}
		if bp := compileBudget(cfg, cr); bp != nil {
			rt.budgets[cr.ID] = bp
		}
		e := cr.ExtProc
		if r.needs.Disabled || e == nil {
			continue
		}
		r.limit = e.BodyLimit(cfg)
		r.reject = e.OnLargeBody == config.LargeBodyReject
		r.json = jsonx.Rules{
			AllowTrailingData:   e.JSON.TrailingData == config.JSONAllow,
			AllowDuplicateNames: e.JSON.DuplicateNames == config.JSONAllow,
			AllowInvalidUTF8:    e.JSON.InvalidUTF8 == config.JSONAllow,
		}
		if e.Hygiene != nil {
			r.hygiene = hygiene.New(cfg.ExtProc.Hygiene, e.Hygiene)
			var m mutation
			m.setAll(r.hygiene.SecurityHeaders())
			r.security = m.set
		}
		if o := e.OpenAPI; o != nil {
			c, perr := loadContract(ctx, o, contracts)
			if perr != nil {
				errs = append(errs, contractError(cfg, p.Field("openapi"), o, perr))
			} else {
				r.contract, r.oaBody, r.oaResp = c, o.RequestBody, o.ValidateResponses
			}
		}
		if rd := e.Redact; rd != nil {
			patterns := make([]*regexp.Regexp, len(rd.NationalIDPatterns))
			for i, p := range rd.NationalIDPatterns {
				patterns[i] = p.Regexp()
			}
			red, rerr := redact.New(redact.Options{
				Paths: rd.Paths, Mask: rd.Mask, NationalIDPatterns: patterns,
				Email: rd.Detectors.Email, Cards: rd.Detectors.Cards, NationalIDs: rd.Detectors.NationalIDs, BearerTokens: rd.Detectors.BearerTokens,
				JSON: r.json,
			})
			if rerr != nil {
				errs = append(errs, &config.FieldError{Path: p.Field("redact").Field("paths"), Msg: strings.TrimPrefix(rerr.Error(), "redact: ")})
			}
			r.redactor = red
		}
		if id := e.Idempotency; id != nil {
			r.idem = &idemPolicy{
				header: strings.ToLower(id.Header), methods: id.IdempotentMethods(), required: id.Required,
				ttl: id.TTL.D(), lock: id.LockTimeout.D(), failOpen: id.FailureMode == config.FailOpen,
				scope: credentialHeaders(cfg), extraScope: id.ScopeHeaders,
			}
		}
		r.stageViews(cr, cfg)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	rt.resolve = routematch.NewResolver(cfg.Routes, rt.routes, contract.ExtProcUnknownRoute)
	rt.grpcResolve = routematch.NewResolver(grpcRoutes(cfg), rt.routes, contract.ExtProcUnknownRoute)
	return rt, nil
}

// credentialHeaders are the request headers ext_authz reads credentials
// from: authorization, the JWT token sources' headers (and cookie when a
// token is read from one) and the API key header. Idempotency keys are
// scoped by their values, so that callers authenticated by any of them
// never share a key space.
func credentialHeaders(cfg *config.Config) []string {
	hs := []string{"authorization"}
	add := func(h string) {
		if h = strings.ToLower(h); h != "" && !slices.Contains(hs, h) {
			hs = append(hs, h)
		}
	}
	if az := cfg.Authz; az != nil {
		if az.JWT != nil {
			for _, src := range az.JWT.From {
				add(src.Header)
				if src.Cookie != "" {
					add("cookie")
				}
			}
		}
		if az.APIKeys != nil {
			add(az.APIKeys.Header)
		}
	}
	return hs
}

// loadContract reads and compiles a route's document, sharing the result
// between routes that use the same one.
func loadContract(ctx context.Context, o *config.RouteOpenAPI, cache map[[32]byte]*openapi.Contract) (*openapi.Contract, error) {
	src := openapi.Source{Data: []byte(o.Spec)}
	if o.File != "" {
		data, err := os.ReadFile(o.File.String())
		if err != nil {
			return nil, &openapi.LoadError{Msg: fmt.Sprintf("cannot read %s: %v", o.File, unwrapPath(err))}
		}
		src = openapi.Source{Data: data, File: o.File.String()}
	}
	set := openapi.Settings{BasePath: o.BasePath, IgnoreFormats: !o.CheckFormats}
	key := sha256.Sum256(append([]byte(fmt.Sprintf("%s\x00%s\x00%t\x00", src.File, o.BasePath, set.IgnoreFormats)), src.Data...))
	if c, ok := cache[key]; ok {
		return c, nil
	}
	c, err := openapi.Load(ctx, src, set)
	if err != nil {
		return nil, err
	}
	cache[key] = c
	return c, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// contractError locates a document problem: in the document file (file
// and line) when it came from one, else at the line of the inline spec
// that holds it.
func contractError(cfg *config.Config, p config.Path, o *config.RouteOpenAPI, err error) *config.FieldError {
	var le *openapi.LoadError
	if !errors.As(err, &le) {
		le = &openapi.LoadError{Msg: err.Error()}
	}
	if o.File != "" {
		fe := &config.FieldError{Path: p.Field("file"), Msg: le.Msg}
		if le.Line > 0 {
			fe.Pos = config.Pos{File: o.File.String(), Line: le.Line}
		}
		return fe
	}
	fe := &config.FieldError{Path: p.Field("spec"), Msg: le.Msg}
	if le.Line > 0 && cfg.Source != nil {
		pos := cfg.Source.Locate(fe.Path)
		if pos.Line > 0 {
			// A block scalar (spec: |) starts on the line after its key.
			if strings.Contains(o.Spec, "\n") {
				pos.Line += le.Line
			}
			fe.Pos = pos
			fe.Msg = fmt.Sprintf("%s (line %d of the document)", le.Msg, le.Line)
		}
	}
	return fe
}

// lookup finds the route of a stream: the route name Envoy sends as a
// request attribute (xds sets it to the route id), else a route id in the
// metadata Envoy forwards, else host/path/method matching on the request
// headers (also for an id not configured here: contract.ExtProcUnknownRoute).
// source labels the metric.
func (rt *runtime) lookup(attrID, metaID string, hs []hygiene.Header) (*route, string) {
	return rt.lookupIn(rt.resolve, hs, attrID, metaID)
}

// lookupIn is lookup with the resolver to match by and the route ids
// carried, in order of trust.
func (rt *runtime) lookupIn(resolve *routematch.Resolver[*route], hs []hygiene.Header, ids ...string) (*route, string) {
	req := func() *routematch.Request {
		if hs == nil {
			return nil
		}
		req := &routematch.Request{Headers: routematch.HeaderFunc(func(name string) (string, bool) { return headerValue(hs, name) })}
		req.Host, _ = headerValue(hs, ":authority")
		req.Path, _ = headerValue(hs, ":path")
		req.Method, _ = headerValue(hs, ":method")
		return req
	}
	r, by, _, idx := resolve.Resolve(req, ids...)
	switch by {
	case routematch.ByID:
		if idx == 0 {
			return r, "attribute"
		}
		return r, "metadata"
	case routematch.ByMatch:
		return r, "match"
	case routematch.UnknownID:
		return rt.none, "unknown_id"
	}
	return rt.none, "none"
}

func headerValue(hs []hygiene.Header, name string) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

// grpcRoutes are the routes served by grpc listeners.
func grpcRoutes(cfg *config.Config) []config.Route {
	var out []config.Route
	for i := range cfg.Routes {
		for j := range cfg.Listeners {
			if l := &cfg.Listeners[j]; l.Kind == config.ListenerGRPC && cfg.Routes[i].ServedBy(l) {
				out = append(out, cfg.Routes[i])
				break
			}
		}
	}
	return out
}

func emptyResolver() *routematch.Resolver[*route] {
	return routematch.NewResolver(nil, map[string]*route{}, contract.ExtProcUnknownRoute)
}
