package config

import (
	"slices"
	"strconv"
	"strings"
)

// retryOn lists Envoy's retry conditions (x-envoy-retry-on and
// x-envoy-retry-grpc-on).
var retryOn = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "envoy-ratelimited",
	"retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal",
	"resource-exhausted", "unavailable",
}

// grpcRetryOn are the conditions proxyless gRPC clients implement.
var grpcRetryOn = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

func (r *Route) hasAction() bool {
	a := &r.RouteAction
	return a.Cluster != "" || len(a.WeightedClusters) > 0 || a.Redirect != nil || a.DirectResponse != nil
}

// served reports whether any listener serves r.
func (r *Route) served(c *Config) bool {
	for i := range c.Listeners {
		if r.ServedBy(&c.Listeners[i]) {
			return true
		}
	}
	return false
}

// routeOf finds the route a RouteAction is embedded in, from the path the
// validator passes (routes[i]).
func routeOf(p Path, a *RouteAction, c *Config) *Route {
	s := strings.TrimSuffix(strings.TrimPrefix(string(p), "routes["), "]")
	if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(c.Routes) && &c.Routes[i].RouteAction == a {
		return &c.Routes[i]
	}
	for i := range c.Routes {
		if &c.Routes[i].RouteAction == a {
			return &c.Routes[i]
		}
	}
	return nil
}

func (a *RouteAction) validate(p Path, c *Config, errs *Errors) {
	r := routeOf(p, a, c)
	actions := 0
	for _, set := range []bool{a.Cluster != "", len(a.WeightedClusters) > 0, a.Redirect != nil, a.DirectResponse != nil} {
		if set {
			actions++
		}
	}
	if actions > 1 {
		errs.Add(p, "set only one of cluster, weightedClusters, redirect and directResponse")
	}
	if a.Cluster != "" && c.ClusterByName(a.Cluster) == nil {
		errs.Add(p.Field("cluster"), "no cluster is named %q%s", a.Cluster, suggestName(a.Cluster, clusterNames(c)))
	}
	if len(a.WeightedClusters) > 0 {
		wp := p.Field("weightedClusters")
		var sum uint64
		names := map[string]int{}
		for i, w := range a.WeightedClusters {
			if c.ClusterByName(w.Name) == nil {
				errs.Add(wp.Index(i).Field("name"), "no cluster is named %q%s", w.Name, suggestName(w.Name, clusterNames(c)))
			}
			if j, dup := names[w.Name]; dup {
				errs.Add(wp.Index(i).Field("name"), "cluster %q is listed twice (also weightedClusters[%d]); add the weights up", w.Name, j)
			}
			names[w.Name] = i
			sum += uint64(w.Weight)
		}
		switch {
		case sum == 0:
			errs.Add(wp, "the weights add up to 0, so no cluster would get any request")
		case sum > 1<<32-1:
			errs.Add(wp, "the weights add up to %d, more than Envoy's limit of %d", sum, uint64(1<<32-1))
		}
	}
	if rd := a.Redirect; rd != nil {
		rp := p.Field("redirect")
		switch rd.Code {
		case 301, 302, 303, 307, 308:
		default:
			errs.Add(rp.Field("code"), "%d is not a redirect status; use 301, 302, 303, 307 or 308", rd.Code)
		}
		if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
			errs.Add(rp.Field("scheme"), "%q is not http or https", rd.Scheme)
		}
		if rd.Port > 65535 {
			errs.Add(rp.Field("port"), "%d is out of range (1-65535)", rd.Port)
		}
		if rd.Path != "" && rd.PrefixRewrite != "" {
			errs.Add(rp, "set only one of path and prefixRewrite")
		}
		if rd.Path != "" && !strings.HasPrefix(rd.Path, "/") {
			errs.Add(rp.Field("path"), "%q must start with /", rd.Path)
		}
		if rd.Host != "" && checkHostPattern(rd.Host) != "" || strings.Contains(rd.Host, "*") {
			errs.Add(rp.Field("host"), "%q is not a host name", rd.Host)
		}
	}
	if d := a.DirectResponse; d != nil {
		dp := p.Field("directResponse")
		if d.Status < 200 || d.Status > 599 {
			errs.Add(dp.Field("status"), "%d is out of range; use 200-599", d.Status)
		}
		if len(d.Body) > 4096 {
			errs.Add(dp.Field("body"), "is %d bytes, more than Envoy's 4096-byte limit for direct responses", len(d.Body))
		}
	}
	for i, l := range a.Listeners {
		if c.ListenerByName(l) == nil {
			errs.Add(p.Field("listeners").Index(i), "no listener is named %q%s", l, suggestName(l, listenerNames(c)))
		}
	}
	if rt := a.Retry; rt != nil {
		rp := p.Field("retry")
		for _, cond := range strings.Split(rt.On, ",") {
			if cond = strings.TrimSpace(cond); !slices.Contains(retryOn, cond) {
				errs.Add(rp.Field("on"), "%q is not a retry condition; use %s", cond, strings.Join(retryOn, ", "))
			}
		}
		if rt.NumRetries < 1 {
			errs.Add(rp.Field("numRetries"), "must be at least 1 (remove retry to turn retries off)")
		}
		if a.Timeout.D() > 0 && rt.PerTryTimeout.D() > a.Timeout.D() {
			errs.Warn(rp.Field("perTryTimeout"), "%s is longer than the route timeout %s, which ends the request first", rt.PerTryTimeout, a.Timeout)
		}
		if rt.Backoff.BaseInterval.D() < 1e6 {
			errs.Add(rp.Field("backoff").Field("baseInterval"), "must be at least 1ms")
		}
		if rt.Backoff.MaxInterval.D() < rt.Backoff.BaseInterval.D() {
			errs.Add(rp.Field("backoff").Field("maxInterval"), "%s is shorter than baseInterval %s", rt.Backoff.MaxInterval, rt.Backoff.BaseInterval)
		}
		for i, s := range rt.RetriableStatusCodes {
			if s < 100 || s > 599 {
				errs.Add(rp.Field("retriableStatusCodes").Index(i), "%d is not an HTTP status (100-599)", s)
			}
		}
	}
	if a.PrefixRewrite != "" && r != nil && !r.Match.Regex.IsZero() {
		errs.Add(p.Field("prefixRewrite"), "does not apply to regex routes")
	}
	for i, h := range a.HashPolicy {
		n := 0
		for _, set := range []bool{h.Header != "", h.Cookie != "", h.SourceIP} {
			if set {
				n++
			}
		}
		if n != 1 {
			errs.Add(p.Field("hashPolicy").Index(i), "set exactly one of header, cookie and sourceIp")
		}
	}
	a.RequestHeaders.validate(p.Field("requestHeaders"), true, errs)
	a.ResponseHeaders.validate(p.Field("responseHeaders"), false, errs)
	if r != nil {
		validateMatchForEnvoy(p.Field("match"), &r.Match, errs)
		a.validateGRPC(p, r, c, errs)
	}
}

// validateGRPC checks what proxyless gRPC clients (gRFC A27/A28) accept
// of a route on a grpc listener and of the clusters it uses.
func (a *RouteAction) validateGRPC(p Path, r *Route, c *Config, errs *Errors) {
	grpcListener := false
	for _, name := range a.Listeners {
		if l := c.ListenerByName(name); l != nil && l.Kind == ListenerGRPC {
			grpcListener = true
		}
	}
	if !grpcListener {
		return
	}
	if a.Redirect != nil || a.DirectResponse != nil {
		errs.Add(p, "a route on a grpc listener must send to a cluster: proxyless gRPC clients fail RPCs on redirects and direct responses")
	}
	if len(r.Match.Query) > 0 {
		errs.Add(p.Field("match").Field("query"), "gRPC requests have no query string; proxyless clients skip routes with query matches")
	}
	if rt := a.Retry; rt != nil {
		for _, cond := range strings.Split(rt.On, ",") {
			if cond = strings.TrimSpace(cond); !slices.Contains(grpcRetryOn, cond) {
				errs.Warn(p.Field("retry").Field("on"), "%q is ignored by proxyless gRPC clients, which retry only on %s", cond, strings.Join(grpcRetryOn, ", "))
			}
		}
	}
	for i, h := range a.HashPolicy {
		if h.Header == "" {
			errs.Warn(p.Field("hashPolicy").Index(i), "proxyless gRPC clients hash on headers only; this input is ignored")
		}
	}
	if len(a.RequestHeaders.Set)+len(a.RequestHeaders.Add)+len(a.RequestHeaders.Remove)+
		len(a.ResponseHeaders.Set)+len(a.ResponseHeaders.Add)+len(a.ResponseHeaders.Remove) > 0 {
		errs.Warn(p, "header edits are ignored by proxyless gRPC clients")
	}
	names := []string{a.Cluster}
	for _, w := range a.WeightedClusters {
		names = append(names, w.Name)
	}
	for _, n := range names {
		cl := c.ClusterByName(n)
		if cl == nil {
			continue
		}
		if cl.Discovery != DiscoveryStatic {
			errs.Add(p, "cluster %q uses %s discovery, but proxyless gRPC clients need endpoints over EDS (discovery: static)", n, cl.Discovery)
		}
		if cl.LBPolicy != LBRoundRobin && cl.LBPolicy != LBRingHash {
			errs.Add(p, "cluster %q uses %s, but proxyless gRPC clients balance with round_robin or ring_hash only", n, cl.LBPolicy)
		}
		if cl.TLS != nil {
			errs.Add(p, "cluster %q originates TLS from files, which proxyless gRPC clients do not support (they use certificate providers)", n)
		}
	}
}

// validateMatchForEnvoy adds the checks of a route match that concern
// Envoy's dialect rather than the match itself (Match.validate).
func validateMatchForEnvoy(p Path, m *Match, errs *Errors) {
	if !m.Regex.IsZero() {
		checkEnvoyRegex(p.Field("regex"), m.Regex.String(), errs)
	}
	for i, h := range m.Headers {
		if !h.Regex.IsZero() {
			checkEnvoyRegex(p.Field("headers").Index(i).Field("regex"), h.Regex.String(), errs)
		}
	}
	for i, q := range m.Query {
		qp := p.Field("query").Index(i)
		if !q.Regex.IsZero() {
			checkEnvoyRegex(qp.Field("regex"), q.Regex.String(), errs)
		}
		if q.Present != nil && !*q.Present {
			errs.Add(qp.Field("present"), "Envoy cannot match an absent query parameter; use present: true or another matcher")
		}
	}
}

// envoyRegexProgramSize is Envoy's default limit on a regex's compiled
// RE2 program (runtime re2.max_program_size.error_level).
const envoyRegexProgramSize = 100

// checkEnvoyRegex refuses regexes Envoy rejects as too large: their RE2
// program, as estimated by RE2ProgramSize, exceeds Envoy's default limit.
func checkEnvoyRegex(p Path, re string, errs *Errors) {
	n, ok := RE2ProgramSize(re)
	if !ok {
		return // Match.validate reports it
	}
	if n > envoyRegexProgramSize {
		errs.Add(p, "%q compiles to about %d RE2 instructions; Envoy refuses regexes over %d (runtime re2.max_program_size.error_level): shorten it, e.g. [0-9]+ for [0-9]{1,40}", re, n, envoyRegexProgramSize)
	}
}

func (h *HeaderEdits) validate(p Path, request bool, errs *Errors) {
	check := func(fp Path, name string) {
		lower := strings.ToLower(name)
		switch {
		case !httpToken.MatchString(strings.TrimPrefix(name, ":")):
			errs.Add(fp, "%q is not a header name", name)
		case strings.HasPrefix(name, ":") || lower == "host":
			errs.Add(fp, "%q cannot be edited here; use hostRewrite or prefixRewrite", name)
		case request && strings.HasPrefix(lower, "x-gatehouse-"):
			errs.Add(fp, "%q is an identity header: only ext_authz sets it, so a route cannot", name)
		}
	}
	for i, hv := range h.Set {
		check(p.Field("set").Index(i).Field("name"), hv.Name)
		checkHeaderFormat(p.Field("set").Index(i).Field("value"), hv.Value, errs)
	}
	for i, hv := range h.Add {
		check(p.Field("add").Index(i).Field("name"), hv.Name)
		checkHeaderFormat(p.Field("add").Index(i).Field("value"), hv.Value, errs)
	}
	for i, n := range h.Remove {
		check(p.Field("remove").Index(i), n)
	}
}

// checkHeaderFormat catches the most common mistake in Envoy's header
// value format: a lone '%', which Envoy rejects (NACKs the whole route
// configuration).
func checkHeaderFormat(p Path, v string, errs *Errors) {
	if msg := checkEnvoyFormat(v); msg != "" {
		errs.Add(p, "%q %s", v, msg)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		errs.Add(p, "header values cannot hold CR, LF or NUL")
	}
}
