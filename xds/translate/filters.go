package translate

import (
	"slices"
	"time"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Filter names. ext_authz's and ext_proc's come from the contract: Envoy
// stores ext_authz's dynamic metadata under the filter's name, and the
// rate limit actions read it from there.
const (
	filterExtProc  = contract.ExtProcFilterName
	filterExtAuthz = contract.AuthzFilterName
	// The two ext_proc stages of HTTP listeners (extprocStageFilter).
	filterExtProcPre  = contract.ExtProcPreAuthzFilterName
	filterExtProcPost = contract.ExtProcPostAuthzFilterName
	filterRateLimit   = "envoy.filters.http.ratelimit"
	// filterStripIdentity removes client-sent identity headers ahead of
	// the other filters where ext_authz may fail open.
	filterStripIdentity = "envoy.filters.http.header_mutation"
	filterRouter        = "envoy.filters.http.router"
)

// anonymousSubject is the subject descriptor value when ext_authz emitted
// none (a route without authz): without a default Envoy would drop the
// whole descriptor and the route would go unlimited.
const anonymousSubject = contract.AnonymousTier

// routeNeeds is what each component asked of Envoy for one route, read
// once from the owners' methods (internal/config/needs.go).
type routeNeeds struct {
	authzOn, extprocOn, ratelimitOn bool
	authz                           config.AuthzNeeds
	extproc                         config.ExtProcNeeds
	// extprocStages are the needs of each ext_proc stage, in the order
	// of config.ExtProcStages (pre_authz, post_authz).
	extprocStages [2]config.ExtProcNeeds
	ratelimit     config.RateLimitNeeds
	// budget is the cost budget's processing (the budget filter).
	budget config.BudgetNeeds
	// authzFilterBody is set on every route when some route needs the
	// body: the ext_authz filter then buffers bodies by default (see
	// authzFilterBodySettings), and the other routes turn that off.
	authzFilterBody bool
	// authzFilter is the ext_authz filter that checks the route: the
	// listener's, or the one with the other failure mode
	// (authzAltFilter) when the route's authz.failureMode differs.
	authzFilter string
	// rateLimitFilterMode is the failure mode of the first rate limit
	// filter; the route's entries of the other mode go to the second.
	rateLimitFilterMode config.FailureMode
}

func needsOf(cfg *config.Config, r *config.Route) routeNeeds {
	n := routeNeeds{authzOn: cfg.Authz != nil, extprocOn: cfg.ExtProc != nil, ratelimitOn: cfg.RateLimit != nil}
	if n.authzOn {
		n.authz = r.AuthzNeeds(cfg)
	}
	if n.extprocOn {
		n.extproc = r.ExtProcNeeds(cfg)
		n.budget = r.BudgetNeeds(cfg)
		for i, s := range config.ExtProcStages {
			n.extprocStages[i] = r.ExtProcStageNeeds(cfg, s)
		}
	}
	if n.ratelimitOn {
		n.ratelimit = r.RateLimitNeeds(cfg)
	}
	return n
}

// authzRuns reports whether ext_authz checks the route's requests, and so
// overwrites the identity headers.
func (n *routeNeeds) authzRuns() bool { return n.authzOn && !n.authz.Disabled }

// authzAltFilter names the second ext_authz filter, whose failure mode is
// the opposite of the listener's mode.
func authzAltFilter(listener config.FailureMode) string {
	if listener == config.FailOpen {
		return contract.AuthzFailClosedFilterName
	}
	return contract.AuthzFailOpenFilterName
}

// authzFilterBodySettings are the ext_authz filter's own body settings
// when some route needs the raw body. Envoy (1.40, envoyproxy/envoy#35623)
// reads pack_as_bytes only from the filter's settings and ignores it in a
// route's: without these, a route's with_request_body sends the body as a
// UTF-8 string (body, not raw_body), which a non-UTF-8 body cannot be.
// The route's settings still decide how much is buffered; routes that need
// no body disable buffering, and a request that matches no route sends at
// most one byte, flagged partial.
var authzFilterBodySettings = &extauthzv3.BufferSettings{MaxRequestBytes: 1, AllowPartialMessage: true, PackAsBytes: true}

// servicesOf is the config's xds.services, or, without an xds section
// (`gatehouse render` still renders such a config), the section's
// defaults: its filters must keep gatehouse's fail-closed modes and
// timeouts rather than zero values (an empty ratelimitFailureMode would
// render the rate limit filter fail-open, and zero timeouts as none).
func servicesOf(cfg *config.Config) config.XDSServices {
	if cfg.XDS != nil {
		return cfg.XDS.Services
	}
	return config.Defaults[config.XDSServices]()
}

func grpcService(component string, timeout config.Duration) *corev3.GrpcService {
	return &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: ServiceClusterName(component),
		}},
		Timeout: durationpb.New(timeout.D()),
	}
}

// extprocStageFilter names the ext_proc filter of a stage.
func extprocStageFilter(s config.ExtProcStage) string {
	if s == config.ExtProcStagePreAuthz {
		return filterExtProcPre
	}
	return filterExtProcPost
}

// extprocStage is the ext_proc filter of one stage. Both call the same
// service; the stage travels as gRPC initial metadata of the stream, so
// that gatehouse runs that stage's processors only. Each has its own
// stat_prefix (http.<listener>.ext_proc.<stage>.*), so Envoy's stats tell
// the stages apart.
func extprocStage(svc config.XDSServices, s config.ExtProcStage) *extprocfilterv3.ExternalProcessor {
	gs := grpcService(config.ComponentExtProc, svc.ExtProcMessageTimeout)
	gs.InitialMetadata = []*corev3.HeaderValue{{Key: contract.ExtProcStageMetadata, Value: string(s)}}
	f := &extprocfilterv3.ExternalProcessor{
		GrpcService:      gs,
		FailureModeAllow: svc.ExtProcFailureMode == config.FailOpen,
		// Nothing is sent unless a route's override asks for it, so
		// a route without processors costs Envoy nothing.
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		MessageTimeout:    durationpb.New(svc.ExtProcMessageTimeout.D()),
		RequestAttributes: []string{contract.ExtProcRouteAttribute},
		// The processors narrow what Envoy sends per request (a GET
		// on an idempotency route needs no body; a non-JSON response
		// needs no redaction); Envoy honours mode_override only when
		// allowed.
		AllowModeOverride: true,
		StatPrefix:        string(s),
	}
	if s == config.ExtProcStagePostAuthz {
		// The verified identity, as ext_authz left it in its dynamic
		// metadata: idempotency keys are scoped by the subject, not by
		// credentials a client sends. (The x-gatehouse-* request headers
		// are no witness here: on a route without ext_authz, a client's
		// own copies are removed only by the router.)
		f.MetadataOptions = &extprocfilterv3.MetadataOptions{
			ForwardingNamespaces: &extprocfilterv3.MetadataOptions_MetadataNamespaces{
				Untyped: []string{contract.AuthzFilterName},
			},
		}
	}
	return f
}

// httpFilters is the filter chain of an HTTP listener:
//
//	header_mutation → ext_proc pre_authz → ext_authz → ratelimit → ext_proc post_authz → [ext_proc budget] → router
//
// each present when its component is configured (header_mutation strips
// client-sent identity headers when ext_authz fails open or the rate
// limiter reads them). Filter-level settings are the defaults for
// requests that match no route; every route carries its own per-route
// config. The ext_proc stages are config.ExtProcStages: hygiene before
// ext_authz, contract validation, idempotency and redaction after the
// rate limit, so that an unauthenticated or throttled client learns
// nothing of the API contract and never reaches the idempotency store.
func (t *translator) httpFilters() ([]*hcmv3.HttpFilter, error) {
	cfg := t.cfg
	svc := servicesOf(cfg)
	var out []*hcmv3.HttpFilter
	add := func(name string, m protoMessage) error {
		a, err := toAny(m)
		if err != nil {
			return err
		}
		out = append(out, &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
		return nil
	}
	if (cfg.Authz != nil && (svc.AuthzFailureMode == config.FailOpen || t.authzAlt)) || cfg.RateLimit != nil || t.budgets {
		// When ext_authz cannot answer and fails open, it neither
		// overwrites nor removes the identity headers, so a client's own
		// x-gatehouse-subject would reach the upstream as if verified.
		// Removing them first closes that; where ext_authz answers, it
		// sets them afterwards. (With the default closed mode a failure
		// refuses the request, and nothing needs removing; with closed
		// and open routes side by side, the filter runs on all of them,
		// which costs nothing where ext_authz overwrites them anyway.)
		// The rate limit filters and the budget filter read the tier
		// header, and the upstream the rate limiter's degraded mark: a
		// client can send neither.
		// The route's own removal of identity headers where ext_authz
		// does not run comes too late for either (the router applies it).
		muts := make([]*mutationrulesv3.HeaderMutation, 0, len(contract.IdentityHeaders)+1)
		for _, h := range contract.IdentityHeaders {
			muts = append(muts, &mutationrulesv3.HeaderMutation{Action: &mutationrulesv3.HeaderMutation_Remove{Remove: h}})
		}
		if cfg.RateLimit != nil {
			muts = append(muts, &mutationrulesv3.HeaderMutation{Action: &mutationrulesv3.HeaderMutation_Remove{Remove: contract.HeaderRateLimit}})
		}
		if err := add(filterStripIdentity, &headermutationv3.HeaderMutation{
			Mutations: &headermutationv3.Mutations{RequestMutations: muts},
		}); err != nil {
			return nil, err
		}
	}
	// ext_proc is off unless a route's config turns it on: most routes
	// run no processor, and this way they carry no per-route config for
	// it (a fifth of a large route table's size).
	addStage := func(st config.ExtProcStage) error {
		if cfg.ExtProc == nil {
			return nil
		}
		if err := add(extprocStageFilter(st), extprocStage(svc, st)); err != nil {
			return err
		}
		out[len(out)-1].Disabled = true
		return nil
	}
	if err := addStage(config.ExtProcStagePreAuthz); err != nil {
		return nil, err
	}
	if cfg.Authz != nil {
		f := &extauthzv3.ExtAuthz{
			Services: &extauthzv3.ExtAuthz_GrpcService{
				GrpcService: grpcService(config.ComponentAuthz, svc.AuthzTimeout),
			},
			TransportApiVersion: corev3.ApiVersion_V3,
			FailureModeAllow:    svc.AuthzFailureMode == config.FailOpen,
			// mTLS/SPIFFE identity needs the client certificate.
			IncludePeerCertificate: true,
		}
		if t.authzBody {
			f.WithRequestBody = authzFilterBodySettings
		}
		if err := add(filterExtAuthz, f); err != nil {
			return nil, err
		}
		if t.authzAlt {
			// Envoy has no per-route failure mode: routes that want the
			// other one are checked by a second filter with that mode,
			// off unless their per-route config turns it on (and the
			// first filter off).
			alt := proto.Clone(f).(*extauthzv3.ExtAuthz)
			alt.FailureModeAllow = !f.FailureModeAllow
			if err := add(authzAltFilter(svc.AuthzFailureMode), alt); err != nil {
				return nil, err
			}
			out[len(out)-1].Disabled = true
		}
	}
	if cfg.RateLimit != nil {
		f := &ratelimitfilterv3.RateLimit{
			Domain:          contract.RateLimitDomain,
			Timeout:         durationpb.New(svc.RateLimitTimeout.D()),
			FailureModeDeny: t.rlMode == config.FailClosed,
			RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
				GrpcService:         grpcService(config.ComponentRateLimit, svc.RateLimitTimeout),
				TransportApiVersion: corev3.ApiVersion_V3,
			},
			EnableXRatelimitHeaders: ratelimitfilterv3.RateLimit_DRAFT_VERSION_03,
		}
		if err := add(filterRateLimit, f); err != nil {
			return nil, err
		}
		if t.rlAlt {
			// Envoy has one failure mode per rate limit filter: the
			// routes' entries of the other mode go to a second filter of
			// that mode, in a stage of its own.
			alt := proto.Clone(f).(*ratelimitfilterv3.RateLimit)
			alt.FailureModeDeny = !f.FailureModeDeny
			alt.Stage = secondRateLimitStage
			name, prefix := rateLimitFilterName(opposite(t.rlMode))
			alt.StatPrefix = prefix
			if err := add(name, alt); err != nil {
				return nil, err
			}
		}
	}
	if err := addStage(config.ExtProcStagePostAuthz); err != nil {
		return nil, err
	}
	if t.budgets {
		f, err := budgetFilter(svc)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	if err := add(filterRouter, &routerv3.Router{}); err != nil {
		return nil, err
	}
	return out, nil
}

// perFilterConfig is a route's typed_per_filter_config: the route id for
// ext_authz, ext_proc's processing mode, and each filter turned off where
// its component asked.
func perFilterConfig(id string, n *routeNeeds) (map[string]*anypb.Any, error) {
	out := map[string]*anypb.Any{}
	set := func(name string, m protoMessage) error {
		a, err := toAny(m)
		if err != nil {
			return err
		}
		out[name] = a
		return nil
	}
	// Each ext_proc stage is disabled at the filter level; a route turns
	// on the stages its processors run in by carrying their overrides
	// (Envoy enables a disabled filter for a route with a per-route
	// config for it).
	for i, st := range config.ExtProcStages {
		sn := &n.extprocStages[i]
		if !n.extprocOn || sn.Disabled {
			continue
		}
		mode := processingMode(sn)
		if st == config.ExtProcStagePostAuthz {
			// Envoy passes a local reply (ext_authz's 401, the rate
			// limit's 429) through every encoder filter, this one too,
			// although it never saw the request: with response headers
			// on, each refused request would open a stream here. The
			// stream asks for the response in its answer to the request
			// headers instead (mode_override), once it has seen one.
			mode.ResponseHeaderMode = extprocfilterv3.ProcessingMode_SKIP
			mode.ResponseBodyMode = extprocfilterv3.ProcessingMode_NONE
			mode.ResponseTrailerMode = extprocfilterv3.ProcessingMode_SKIP
		}
		m := &extprocfilterv3.ExtProcPerRoute{Override: &extprocfilterv3.ExtProcPerRoute_Overrides{Overrides: &extprocfilterv3.ExtProcOverrides{
			ProcessingMode:    mode,
			RequestAttributes: []string{contract.ExtProcRouteAttribute},
		}}}
		if err := set(extprocStageFilter(st), m); err != nil {
			return nil, err
		}
	}
	if n.budget.Enabled {
		a, err := budgetPerRoute(n)
		if err != nil {
			return nil, err
		}
		out[filterBudget] = a
	}
	if n.authzOn && n.authzFilter != filterExtAuthz && !n.authz.Disabled {
		// Checked by the second filter: the first one is off here.
		if err := set(filterExtAuthz, &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}}); err != nil {
			return nil, err
		}
	}
	if n.authzOn {
		var m *extauthzv3.ExtAuthzPerRoute
		if n.authz.Disabled {
			m = &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_Disabled{Disabled: true}}
		} else {
			cs := &extauthzv3.CheckSettings{ContextExtensions: map[string]string{contract.ContextExtensionRoute: id}}
			switch {
			case n.authz.RequestBody:
				cs.WithRequestBody = &extauthzv3.BufferSettings{
					MaxRequestBytes:     n.authz.MaxRequestBytes,
					AllowPartialMessage: n.authz.AllowPartialMessage,
					PackAsBytes:         true,
				}
			case n.authzFilterBody:
				cs.DisableRequestBodyBuffering = true
			}
			m = &extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{CheckSettings: cs}}
		}
		name := n.authzFilter
		if n.authz.Disabled {
			name = filterExtAuthz // the second filter is off unless turned on
		}
		if err := set(name, m); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func headerMode(on bool) extprocfilterv3.ProcessingMode_HeaderSendMode {
	if on {
		return extprocfilterv3.ProcessingMode_SEND
	}
	return extprocfilterv3.ProcessingMode_SKIP
}

func processingMode(n *config.ExtProcNeeds) *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   headerMode(n.RequestHeaders),
		ResponseHeaderMode:  headerMode(n.ResponseHeaders),
		RequestBodyMode:     n.RequestBody.Envoy(),
		ResponseBodyMode:    n.ResponseBody.Envoy(),
		RequestTrailerMode:  headerMode(n.RequestTrailers),
		ResponseTrailerMode: headerMode(n.ResponseTrailers),
	}
}

// rateLimits builds the one descriptor gatehouse's rate limiter reads:
// route (the id), tier and subject (from ext_authz's dynamic metadata),
// then the route's header entries; for the rate limit filter of the
// tier's failure mode (see ratelimitmodes.go).
func rateLimits(id string, n *routeNeeds) []*routev3.RateLimit {
	if !n.ratelimitOn || !n.ratelimit.Enabled {
		return nil
	}
	meta := func(key, field, def string) *routev3.RateLimit_Action {
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Metadata{Metadata: &routev3.RateLimit_Action_MetaData{
			DescriptorKey: key,
			MetadataKey: &metadatav3.MetadataKey{
				// Whichever ext_authz filter checked the route, Envoy
				// (1.40) stores its dynamic metadata under the
				// extension's name, not the filter's configured name.
				Key:  contract.AuthzFilterName,
				Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: field}}},
			},
			DefaultValue: def,
			Source:       routev3.RateLimit_Action_MetaData_DYNAMIC,
		}}}
	}
	actions := []*routev3.RateLimit_Action{
		{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
			DescriptorKey: contract.DescriptorRoute, DescriptorValue: id,
		}}},
		meta(contract.DescriptorTier, contract.MetaTier, contract.AnonymousTier),
		meta(contract.DescriptorSubject, contract.MetaSubject, anonymousSubject),
	}
	for _, h := range n.ratelimit.HeaderEntries {
		actions = append(actions, &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
			HeaderName:    h.Header,
			DescriptorKey: h.Key,
			// A client must not escape its quota by leaving a header out:
			// without it the entry is skipped, not the whole descriptor.
			SkipIfAbsent: true,
		}}})
	}
	mode, except := n.ratelimit.FailureMode, n.ratelimit.Except
	entry := func(m config.FailureMode, acts []*routev3.RateLimit_Action) *routev3.RateLimit {
		rl := &routev3.RateLimit{Actions: acts}
		if m != n.rateLimitFilterMode {
			rl.Stage = wrapperspb.UInt32(secondRateLimitStage)
		}
		return rl
	}
	if len(except) == 0 {
		return []*routev3.RateLimit{entry(mode, actions)}
	}
	// The tiers in except go to the filter of the other mode, every other
	// tier to the filter of mode: each request makes one descriptor.
	return []*routev3.RateLimit{
		entry(opposite(mode), append(slices.Clip(actions), tierMatch(except, true, opposite(mode)))),
		entry(mode, append(slices.Clip(actions), tierMatch(except, false, mode))),
	}
}

func dur(d config.Duration) *durationpb.Duration { return durationpb.New(time.Duration(d)) }
