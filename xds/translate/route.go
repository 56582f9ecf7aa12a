package translate

import (
	"fmt"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/internal/parallel"
)

// routeConfig builds a listener's route configuration and returns the
// clusters its routes send to.
//
// Envoy requires every domain in exactly one virtual host, and picks the
// virtual host by the most specific domain (exact, then the longest
// "*.suffix", then the longest "prefix.*", then "*") without falling
// through to a less specific one. internal/routematch has the same rules,
// so each domain pattern gets exactly the routes that list it (routes with
// no hosts list "*"), in config order. Domains with the same route list
// share one virtual host.
func (t *translator) routeConfig(l *config.Listener) (*routev3.RouteConfiguration, []string, error) {
	cfg := t.cfg
	grpc := l.Kind == config.ListenerGRPC
	byDomain := map[string][]int{}
	var domains []string
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if !r.ServedBy(l) {
			continue
		}
		hosts := r.Match.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		for _, h := range hosts {
			h = strings.ToLower(h)
			list, seen := byDomain[h]
			if !seen {
				domains = append(domains, h)
			}
			if len(list) == 0 || list[len(list)-1] != i {
				byDomain[h] = append(list, i)
			}
		}
	}

	// Group domains by identical route lists, in order of first appearance.
	type vhostKey string
	keyOf := func(list []int) vhostKey {
		var b strings.Builder
		for _, i := range list {
			fmt.Fprintf(&b, "%d,", i)
		}
		return vhostKey(b.String())
	}
	groups := map[vhostKey]int{}
	type vhostPlan struct {
		domains []string
		routes  []int
	}
	var plans []*vhostPlan
	for _, d := range domains {
		k := keyOf(byDomain[d])
		if gi, ok := groups[k]; ok {
			plans[gi].domains = append(plans[gi].domains, d)
			continue
		}
		groups[k] = len(plans)
		plans = append(plans, &vhostPlan{domains: []string{d}, routes: byDomain[d]})
	}

	// Each route is built once and shared by the virtual hosts that hold
	// it; they are built in parallel (20,000 routes are most of a
	// translation), and the first error in order is reported.
	var order []int
	want := make([]bool, len(cfg.Routes))
	for _, plan := range plans {
		for _, i := range plan.routes {
			if !want[i] {
				want[i] = true
				order = append(order, i)
			}
		}
	}
	ers := make([]*routev3.Route, len(cfg.Routes))
	errs := make([]error, len(cfg.Routes))
	parallel.Do(len(order), func() func(int) {
		return func(k int) {
			i := order[k]
			ers[i], errs[i] = t.route(i, grpc)
		}
	})
	for _, i := range order {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
	}
	built := map[int]bool{}
	clusterSet := map[string]bool{}
	var clusters []string
	rc := &routev3.RouteConfiguration{Name: RouteConfigName(l)}
	for _, plan := range plans {
		vh := &routev3.VirtualHost{Name: plan.domains[0], Domains: plan.domains}
		for _, i := range plan.routes {
			er := ers[i]
			if !built[i] {
				built[i] = true
				t.addOrigin(cfg.Routes[i].ID, "route", cfg.Routes[i].ID, config.Path("routes").Index(i))
				for _, c := range routeClusters(&cfg.Routes[i]) {
					if !clusterSet[c] {
						clusterSet[c] = true
						clusters = append(clusters, c)
					}
				}
			}
			vh.Routes = append(vh.Routes, er)
		}
		t.addOrigin(vh.GetName(), "virtual_host", l.Name+"/"+vh.GetName(), config.Path("listeners").Index(t.listenerIndex(l)))
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc, clusters, nil
}

func (t *translator) listenerIndex(l *config.Listener) int {
	for i := range t.cfg.Listeners {
		if &t.cfg.Listeners[i] == l {
			return i
		}
	}
	return 0
}

func routeClusters(r *config.Route) []string {
	if r.Cluster != "" {
		return []string{r.Cluster}
	}
	out := make([]string, 0, len(r.WeightedClusters))
	for _, w := range r.WeightedClusters {
		out = append(out, w.Name)
	}
	return out
}

// route builds the Envoy route of routes[i] (its origin is the caller's
// to record: routes are built in parallel). Routes on grpc listeners
// carry only what proxyless gRPC clients implement (gRFC A28): no header
// edits or rate limits, and of the filter configs ext_proc's alone
// (gRFC A93).
func (t *translator) route(i int, grpc bool) (*routev3.Route, error) {
	r := &t.cfg.Routes[i]
	p := config.Path("routes").Index(i)
	match, err := routeMatch(&r.Match)
	if err != nil {
		return nil, fmt.Errorf("%s.match: %v", p, err)
	}
	er := &routev3.Route{
		Name:  r.ID,
		Match: match,
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			contract.RouteMetadataNamespace: structOf(map[string]string{contract.RouteMetadataID: r.ID}),
		}},
	}
	n := &t.needs[i]
	switch {
	case r.Redirect != nil:
		er.Action = &routev3.Route_Redirect{Redirect: redirect(r.Redirect)}
	case r.DirectResponse != nil:
		dr := &routev3.DirectResponseAction{Status: r.DirectResponse.Status}
		if r.DirectResponse.Body != "" {
			dr.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: r.DirectResponse.Body}}
		}
		er.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	case r.Cluster != "" || len(r.WeightedClusters) > 0:
		ra := routeAction(&r.RouteAction, grpc)
		if !grpc {
			ra.RateLimits = rateLimits(r.ID, n)
		}
		er.Action = &routev3.Route_Route{Route: ra}
	default:
		return nil, fmt.Errorf("%s: route %q has no action (cluster, weightedClusters, redirect or directResponse)", p, r.ID)
	}
	if grpc {
		if er.TypedPerFilterConfig, err = t.grpcPerFilterConfig(r.ID, n); err != nil {
			return nil, err
		}
		return er, nil
	}
	if er.TypedPerFilterConfig, err = perFilterConfig(r.ID, n); err != nil {
		return nil, err
	}
	er.RequestHeadersToAdd = headerOptions(r.RequestHeaders)
	er.RequestHeadersToRemove = append([]string(nil), r.RequestHeaders.Remove...)
	if !n.authzRuns() {
		// Where ext_authz runs it overwrites the identity headers; where
		// it does not, a client must not be able to send its own. (On
		// authz routes this removal would run after ext_authz and wipe
		// the headers it set, so it is only here.)
		er.RequestHeadersToRemove = append(er.RequestHeadersToRemove, contract.IdentityHeaders...)
	}
	er.ResponseHeadersToAdd = headerOptions(r.ResponseHeaders)
	er.ResponseHeadersToRemove = append([]string(nil), r.ResponseHeaders.Remove...)
	if n.extprocOn && !n.extproc.Disabled {
		er.ResponseHeadersToRemove = append(er.ResponseHeadersToRemove, n.extproc.ResponseHeadersToRemove...)
	}
	return er, nil
}

func routeMatch(m *config.Match) (*routev3.RouteMatch, error) {
	rm := &routev3.RouteMatch{}
	switch {
	case !m.Regex.IsZero():
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: m.Regex.String()}}
	case m.Path != "":
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: m.Path}
	default:
		prefix := m.Prefix
		if prefix == "" {
			prefix = "/"
		}
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: prefix}
	}
	if m.CaseInsensitive {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	switch len(m.Methods) {
	case 0:
	case 1:
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Methods[0]},
			}}})
	default:
		quoted := make([]string, len(m.Methods))
		for i, meth := range m.Methods {
			quoted[i] = regexp.QuoteMeta(meth)
		}
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{Name: ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: strings.Join(quoted, "|")}},
			}}})
	}
	for _, h := range m.Headers {
		hm := &routev3.HeaderMatcher{Name: strings.ToLower(h.Name), InvertMatch: h.Invert}
		if h.Present != nil {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: *h.Present}
		} else {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(h.Exact, h.Prefix, h.Regex)}
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, q := range m.Query {
		qm := &routev3.QueryParameterMatcher{Name: q.Name}
		if q.Present != nil {
			if !*q.Present {
				return nil, fmt.Errorf("query %q: Envoy cannot match an absent query parameter", q.Name)
			}
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(q.Exact, q.Prefix, q.Regex)}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm, nil
}

func stringMatcher(exact, prefix string, re config.Regex) *matcherv3.StringMatcher {
	switch {
	case !re.IsZero():
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re.String()}}}
	case prefix != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: exact}}
}

func routeAction(a *config.RouteAction, grpc bool) *routev3.RouteAction {
	ra := &routev3.RouteAction{}
	if a.Cluster != "" {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: a.Cluster}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, w := range a.WeightedClusters {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: w.Name, Weight: wrapperspb.UInt32(w.Weight)})
		}
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if rt := a.Retry; rt != nil {
		rp := &routev3.RetryPolicy{
			RetryOn:    strings.ReplaceAll(rt.On, " ", ""),
			NumRetries: wrapperspb.UInt32(rt.NumRetries),
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
				BaseInterval: dur(rt.Backoff.BaseInterval),
				MaxInterval:  dur(rt.Backoff.MaxInterval),
			},
		}
		if rt.PerTryTimeout > 0 {
			rp.PerTryTimeout = dur(rt.PerTryTimeout)
		}
		rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, rt.RetriableStatusCodes...)
		ra.RetryPolicy = rp
	}
	for _, h := range a.HashPolicy {
		hp := &routev3.RouteAction_HashPolicy{Terminal: h.Terminal}
		switch {
		case h.Header != "":
			hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(h.Header)}}
		case h.Cookie != "":
			hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: h.Cookie}}
		default:
			hp.PolicySpecifier = &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}
		}
		ra.HashPolicy = append(ra.HashPolicy, hp)
	}
	if grpc {
		// gRPC bounds RPCs with max_stream_duration, not timeout (A28).
		if a.Timeout > 0 {
			ra.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: dur(a.Timeout)}
		}
		return ra
	}
	ra.Timeout = dur(a.Timeout)
	if a.IdleTimeout > 0 {
		ra.IdleTimeout = dur(a.IdleTimeout)
	}
	if a.PrefixRewrite != "" {
		ra.PrefixRewrite = a.PrefixRewrite
	}
	if a.HostRewrite != "" {
		ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: a.HostRewrite}
	}
	return ra
}

func redirect(r *config.Redirect) *routev3.RedirectAction {
	ra := &routev3.RedirectAction{HostRedirect: r.Host, PortRedirect: r.Port, StripQuery: r.StripQuery}
	switch r.Scheme {
	case "https":
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true}
	case "http":
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "http"}
	}
	switch {
	case r.Path != "":
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: r.Path}
	case r.PrefixRewrite != "":
		ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: r.PrefixRewrite}
	}
	switch r.Code {
	case 302:
		ra.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		ra.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		ra.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		ra.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		ra.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	}
	return ra
}

func headerOptions(e config.HeaderEdits) []*corev3.HeaderValueOption {
	var out []*corev3.HeaderValueOption
	for _, h := range e.Set {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(h.Name), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, h := range e.Add {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(h.Name), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return out
}
