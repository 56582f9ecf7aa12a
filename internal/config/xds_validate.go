package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// Validation of the xds schema (xds.go). What needs the whole route table
// (shadowed routes) runs once from XDS.validate; per-item checks run from
// each item's validate method.

var resourceNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

const resourceNameRule = "use 1-64 lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit"

// ServedBy reports whether listener l serves route r: a route naming no
// listener is served by every http listener; grpc listeners serve only the
// routes that name them.
func (r *Route) ServedBy(l *Listener) bool {
	if len(r.Listeners) == 0 {
		return l.Kind == ListenerHTTP
	}
	return slices.Contains(r.Listeners, l.Name)
}

// ListenerByName returns the listener named name, or nil.
func (c *Config) ListenerByName(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}

// ClusterByName returns the cluster named name, or nil.
func (c *Config) ClusterByName(name string) *Cluster {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	return nil
}

// ServiceAddress is the address at which Envoy reaches one of gatehouse's
// services: the configured xds.services address, or else the service's
// listen address. The second result is false when the component is not
// configured.
func (c *Config) ServiceAddress(component string) (string, bool) {
	var svc XDSServices
	if c.XDS != nil {
		svc = c.XDS.Services
	}
	switch component {
	case ComponentAuthz:
		if c.Authz == nil {
			return "", false
		}
		return firstNonEmpty(svc.Authz, c.Authz.Address), true
	case ComponentExtProc:
		if c.ExtProc == nil {
			return "", false
		}
		return firstNonEmpty(svc.ExtProc, c.ExtProc.Address), true
	case ComponentRateLimit:
		if c.RateLimit == nil {
			return "", false
		}
		return firstNonEmpty(svc.RateLimit, c.RateLimit.Address), true
	}
	return "", false
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (x *XDS) validate(p Path, c *Config, errs *Errors) {
	sp := p.Field("services")
	for _, s := range []struct{ field, addr string }{
		{"authz", x.Services.Authz}, {"extproc", x.Services.ExtProc}, {"ratelimit", x.Services.RateLimit},
	} {
		if s.addr != "" {
			if msg := checkHostPort(s.addr, false); msg != "" {
				errs.Add(sp.Field(s.field), "%q %s", s.addr, msg)
			}
		}
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"connectTimeout", x.Services.ConnectTimeout}, {"authzTimeout", x.Services.AuthzTimeout},
		{"extprocMessageTimeout", x.Services.ExtProcMessageTimeout}, {"ratelimitTimeout", x.Services.RateLimitTimeout},
	} {
		if d.v.D() <= 0 {
			errs.Add(sp.Field(d.field), "must be more than 0s")
		}
	}
	// gatehouse answers a message within extproc.messageTimeout (on a slow
	// store it applies the route's failure mode); Envoy must wait longer
	// than that, or it gives up first and gatehouse's decision is lost.
	if c.ExtProc != nil && x.Services.ExtProcMessageTimeout.D() <= c.ExtProc.MessageTimeout.D() {
		errs.Add(sp.Field("extprocMessageTimeout"), "%s must be longer than extproc.messageTimeout (%s), so that Envoy waits for gatehouse's answer", x.Services.ExtProcMessageTimeout, c.ExtProc.MessageTimeout)
	}
	// The same for the rate limiter: past ratelimit.store.timeout it
	// answers by the route's failure mode, which Envoy must wait for.
	if c.RateLimit != nil && x.Services.RateLimitTimeout.D() <= c.RateLimit.Store.Timeout.D() {
		errs.Add(sp.Field("ratelimitTimeout"), "%s must be longer than ratelimit.store.timeout (%s), so that Envoy waits for gatehouse's answer", x.Services.RateLimitTimeout, c.RateLimit.Store.Timeout)
	}

	groups := map[string]int{}
	ids := map[string]string{}
	clusters := map[string]string{}
	for i := range x.NodeGroups {
		g := &x.NodeGroups[i]
		gp := p.Field("nodeGroups").Index(i)
		switch {
		case !resourceNamePattern.MatchString(g.Name):
			errs.Add(gp.Field("name"), "%q is not a group name; %s", g.Name, resourceNameRule)
		case g.Name == DefaultNodeGroup:
			errs.Add(gp.Field("name"), "%q is the built-in group of nodes in no group; pick another name", g.Name)
		default:
			if j, dup := groups[g.Name]; dup {
				errs.Add(gp.Field("name"), "duplicate group name %q (also nodeGroups[%d])", g.Name, j)
			}
			groups[g.Name] = i
		}
		if len(g.NodeIDs) == 0 && len(g.NodeClusters) == 0 && g.Name != x.DefaultGroup {
			errs.Add(gp, "group %q has no nodeIds and no nodeClusters, so no node can join it", g.Name)
		}
		for j, id := range g.NodeIDs {
			if id == "" {
				errs.Add(gp.Field("nodeIds").Index(j), "is empty")
			} else if other, dup := ids[id]; dup {
				errs.Add(gp.Field("nodeIds").Index(j), "node id %q is also in group %q; a node belongs to one group", id, other)
			} else {
				ids[id] = g.Name
			}
		}
		for j, cl := range g.NodeClusters {
			if cl == "" {
				errs.Add(gp.Field("nodeClusters").Index(j), "is empty")
			} else if other, dup := clusters[cl]; dup {
				errs.Add(gp.Field("nodeClusters").Index(j), "node cluster %q is also in group %q; a node belongs to one group", cl, other)
			} else {
				clusters[cl] = g.Name
			}
		}
		for j, l := range g.Listeners {
			if c.ListenerByName(l) == nil {
				errs.Add(gp.Field("listeners").Index(j), "no listener is named %q%s", l, suggestName(l, listenerNames(c)))
			}
		}
	}
	if x.DefaultGroup != "" {
		if _, ok := groups[x.DefaultGroup]; !ok && x.DefaultGroup != DefaultNodeGroup {
			errs.Add(p.Field("defaultGroup"), "no node group is named %q%s", x.DefaultGroup, suggestName(x.DefaultGroup, x.groupNames()))
		}
	}
	if len(c.Listeners) == 0 {
		errs.Warn("listeners", "xds is enabled but no listener is configured: nodes will receive no listeners")
	}
	for _, comp := range []string{ComponentAuthz, ComponentExtProc, ComponentRateLimit} {
		if addr, ok := c.ServiceAddress(comp); ok && strings.HasSuffix(addr, ":0") {
			errs.Warn(sp.Field(comp), "%s listens on an ephemeral port (%s), which Envoy cannot be told; set xds.services.%s to the address Envoy dials", comp, addr, comp)
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if !r.hasAction() && r.served(c) {
			errs.Add(Path("routes").Index(i), "route %q is served by a listener but has no action; set one of cluster, weightedClusters, redirect and directResponse", r.ID)
		}
	}
	checkShadowing(c, errs)
}

// DefaultNodeGroup is the built-in group of nodes that no node group
// claims (unless xds.defaultGroup names another).
const DefaultNodeGroup = "default"

func (x *XDS) groupNames() []string {
	out := make([]string, 0, len(x.NodeGroups))
	for _, g := range x.NodeGroups {
		out = append(out, g.Name)
	}
	return out
}

func listenerNames(c *Config) []string {
	out := make([]string, 0, len(c.Listeners))
	for _, l := range c.Listeners {
		out = append(out, l.Name)
	}
	return out
}

func clusterNames(c *Config) []string {
	out := make([]string, 0, len(c.Clusters))
	for _, cl := range c.Clusters {
		out = append(out, cl.Name)
	}
	return out
}

// suggestName proposes the closest existing name.
func suggestName(name string, valid []string) string {
	best, bestD := "", 3
	for _, v := range valid {
		if d := editDistance(name, v); d < bestD {
			best, bestD = v, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

func (l *Listener) validate(p Path, c *Config, errs *Errors) {
	if !resourceNamePattern.MatchString(l.Name) {
		errs.Add(p.Field("name"), "%q is not a listener name; %s", l.Name, resourceNameRule)
	}
	for j := range c.Listeners {
		o := &c.Listeners[j]
		if o == l {
			break
		}
		if o.Name == l.Name && l.Name != "" {
			errs.Add(p.Field("name"), "duplicate listener name %q (also listeners[%d])", l.Name, j)
		}
		if o.Address == l.Address && l.Address != "" {
			errs.Add(p.Field("address"), "%q is also the address of listeners[%d] (%s)", l.Address, j, o.Name)
		}
	}
	switch l.Kind {
	case ListenerGRPC:
		if l.Address != "" {
			errs.Add(p.Field("address"), "a grpc listener is an API listener for proxyless gRPC clients and binds no address; remove it")
		}
		if l.TLS != nil {
			errs.Add(p.Field("tls"), "a grpc listener binds no socket, so it has no TLS")
		}
	default:
		if l.Address == "" {
			errs.Add(p.Field("address"), "is required: the host:port Envoy binds, e.g. 0.0.0.0:8080")
		} else if msg := checkHostPort(l.Address, false); msg != "" {
			errs.Add(p.Field("address"), "%q %s", l.Address, msg)
		} else if h, _, _ := net.SplitHostPort(l.Address); net.ParseIP(h) == nil {
			errs.Add(p.Field("address"), "%q: Envoy binds an IP address, not a host name; use e.g. 0.0.0.0 or 127.0.0.1", l.Address)
		}
	}
	if l.MaxRequestHeadersKB < 1 || l.MaxRequestHeadersKB > 8192 {
		errs.Add(p.Field("maxRequestHeadersKb"), "%d is out of range; use 1-8192", l.MaxRequestHeadersKB)
	}
	if t := l.TLS; t != nil {
		tp := p.Field("tls")
		checkEnvoyFile(tp.Field("certFile"), t.CertFile, true, errs)
		checkEnvoyFile(tp.Field("keyFile"), t.KeyFile, true, errs)
		checkEnvoyFile(tp.Field("clientCaFile"), t.ClientCAFile, false, errs)
	}
}

// checkEnvoyFile checks a path Envoy reads on its own host: gatehouse
// cannot resolve it against its config directory, so it must be absolute.
func checkEnvoyFile(p Path, f string, required bool, errs *Errors) {
	switch {
	case f == "" && required:
		errs.Add(p, "is required")
	case f != "" && !filepath.IsAbs(f):
		errs.Add(p, "%q must be an absolute path: Envoy reads it on its own host", f)
	}
}

func (cl *Cluster) validate(p Path, c *Config, errs *Errors) {
	if !resourceNamePattern.MatchString(cl.Name) {
		errs.Add(p.Field("name"), "%q is not a cluster name; %s", cl.Name, resourceNameRule)
	} else if strings.HasPrefix(cl.Name, "gatehouse.") {
		errs.Add(p.Field("name"), "%q: names starting with \"gatehouse.\" are reserved for gatehouse's own services", cl.Name)
	}
	for j := range c.Clusters {
		o := &c.Clusters[j]
		if o == cl {
			break
		}
		if o.Name == cl.Name && cl.Name != "" {
			errs.Add(p.Field("name"), "duplicate cluster name %q (also clusters[%d])", cl.Name, j)
		}
	}
	ep := p.Field("endpoints")
	if len(cl.Endpoints) == 0 {
		errs.Add(ep, "at least one endpoint (host:port) is required")
	}
	if cl.Discovery == DiscoveryLogicalDNS && len(cl.Endpoints) > 1 {
		errs.Add(ep, "logical_dns takes exactly one host name; use strict_dns for several")
	}
	seen := map[string]int{}
	for i, e := range cl.Endpoints {
		p := ep.Index(i)
		host, port, err := net.SplitHostPort(e.Address)
		if err != nil {
			errs.Add(p.Field("address"), "%q is not host:port", e.Address)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			errs.Add(p.Field("address"), "%q has no valid port (1-65535)", e.Address)
		}
		if cl.Discovery == DiscoveryStatic && net.ParseIP(host) == nil {
			errs.Add(p.Field("address"), "%q: static endpoints are IP addresses; use discovery: strict_dns for host names", e.Address)
		}
		if host == "" {
			errs.Add(p.Field("address"), "%q has no host", e.Address)
		}
		if j, dup := seen[e.Address]; dup {
			errs.Add(p.Field("address"), "duplicate endpoint %q (also endpoints[%d])", e.Address, j)
		}
		seen[e.Address] = i
		if e.Weight < 1 || e.Weight > 128 {
			errs.Add(p.Field("weight"), "%d is out of range; use 1-128", e.Weight)
		}
	}
	if cl.ConnectTimeout.D() <= 0 {
		errs.Add(p.Field("connectTimeout"), "must be more than 0s")
	}
	if cl.Discovery != DiscoveryStatic && cl.DNSRefreshRate.D() < 1e6 {
		errs.Add(p.Field("dnsRefreshRate"), "must be at least 1ms")
	}
	if rh := cl.RingHash; rh.MinimumRingSize < 1 || rh.MaximumRingSize < rh.MinimumRingSize || rh.MaximumRingSize > 8388608 {
		errs.Add(p.Field("ringHash"), "need 1 <= minimumRingSize <= maximumRingSize <= 8388608 (got %d and %d)", rh.MinimumRingSize, rh.MaximumRingSize)
	}
	if h := cl.HealthCheck; h != nil {
		hp := p.Field("healthCheck")
		if h.Interval.D() <= 0 {
			errs.Add(hp.Field("interval"), "must be more than 0s")
		}
		if h.Timeout.D() <= 0 {
			errs.Add(hp.Field("timeout"), "must be more than 0s")
		} else if h.Timeout.D() > h.Interval.D() {
			errs.Add(hp.Field("timeout"), "%s is longer than the interval %s; probes would overlap", h.Timeout, h.Interval)
		}
		if h.NoTrafficInterval.D() <= 0 {
			errs.Add(hp.Field("noTrafficInterval"), "must be more than 0s")
		}
		if h.HealthyThreshold < 1 {
			errs.Add(hp.Field("healthyThreshold"), "must be at least 1")
		}
		if h.UnhealthyThreshold < 1 {
			errs.Add(hp.Field("unhealthyThreshold"), "must be at least 1")
		}
		if h.Kind == HealthGRPC && cl.Protocol != ProtocolHTTP2 {
			errs.Add(hp.Field("kind"), "grpc health checks speak HTTP/2; set the cluster's protocol: http2")
		}
		if h.Kind == HealthHTTP && !strings.HasPrefix(h.Path, "/") {
			errs.Add(hp.Field("path"), "%q must start with /", h.Path)
		}
		for i, s := range h.ExpectedStatuses {
			if s < 100 || s > 599 {
				errs.Add(hp.Field("expectedStatuses").Index(i), "%d is not an HTTP status (100-599)", s)
			}
		}
	}
	if o := cl.OutlierDetection; o != nil {
		o.validate(p.Field("outlierDetection"), errs)
	}
	if t := cl.TLS; t != nil {
		tp := p.Field("tls")
		checkEnvoyFile(tp.Field("caFile"), t.CAFile, false, errs)
		checkEnvoyFile(tp.Field("certFile"), t.CertFile, false, errs)
		checkEnvoyFile(tp.Field("keyFile"), t.KeyFile, false, errs)
		if (t.CertFile == "") != (t.KeyFile == "") {
			errs.Add(tp, "certFile and keyFile go together")
		}
		if t.CAFile == "" && !t.InsecureSkipVerify {
			errs.Add(tp.Field("caFile"), "is required to verify the upstream certificate; set insecureSkipVerify: true to knowingly skip verification")
		}
		if t.CAFile != "" && t.InsecureSkipVerify {
			errs.Add(tp.Field("insecureSkipVerify"), "contradicts caFile; remove one")
		}
	}
}

func (o *OutlierDetection) validate(p Path, errs *Errors) {
	if o.Interval.D() <= 0 {
		errs.Add(p.Field("interval"), "must be more than 0s")
	}
	if o.BaseEjectionTime.D() <= 0 {
		errs.Add(p.Field("baseEjectionTime"), "must be more than 0s")
	}
	if o.MaxEjectionTime.D() < o.BaseEjectionTime.D() {
		errs.Add(p.Field("maxEjectionTime"), "%s is shorter than baseEjectionTime %s", o.MaxEjectionTime, o.BaseEjectionTime)
	}
	percent := func(f Path, v uint32) {
		if v > 100 {
			errs.Add(f, "%d is not a percentage (0-100)", v)
		}
	}
	percent(p.Field("maxEjectionPercent"), o.MaxEjectionPercent)
	consecutive := func(f Path, c *Consecutive) {
		if c == nil {
			return
		}
		if c.Threshold < 1 {
			errs.Add(f.Field("threshold"), "must be at least 1")
		}
		percent(f.Field("enforcing"), c.Enforcing)
	}
	consecutive(p.Field("consecutive5xx"), &o.Consecutive5xx)
	consecutive(p.Field("consecutiveGatewayFailure"), o.ConsecutiveGatewayFailure)
	consecutive(p.Field("consecutiveLocalOriginFailure"), o.ConsecutiveLocalOriginFailure)
	if o.ConsecutiveLocalOriginFailure != nil && !o.SplitExternalLocalOriginErrors {
		errs.Add(p.Field("consecutiveLocalOriginFailure"), "counts only with splitExternalLocalOriginErrors: true")
	}
	if s := o.SuccessRate; s != nil {
		sp := p.Field("successRate")
		percent(sp.Field("enforcing"), s.Enforcing)
		percent(sp.Field("enforcingLocalOrigin"), s.EnforcingLocalOrigin)
		if s.MinimumHosts < 1 {
			errs.Add(sp.Field("minimumHosts"), "must be at least 1")
		}
		if s.RequestVolume < 1 {
			errs.Add(sp.Field("requestVolume"), "must be at least 1")
		}
	}
	if f := o.FailurePercentage; f != nil {
		fp := p.Field("failurePercentage")
		percent(fp.Field("threshold"), f.Threshold)
		percent(fp.Field("enforcing"), f.Enforcing)
		percent(fp.Field("enforcingLocalOrigin"), f.EnforcingLocalOrigin)
		if f.MinimumHosts < 1 {
			errs.Add(fp.Field("minimumHosts"), "must be at least 1")
		}
		if f.RequestVolume < 1 {
			errs.Add(fp.Field("requestVolume"), "must be at least 1")
		}
	}
}

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

// checkEnvoyRegex warns about regexes Envoy may reject as too large. Go's
// program size is close to, not equal to, RE2's, hence a warning.
func checkEnvoyRegex(p Path, re string, errs *Errors) {
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return // Match.validate reports it
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return
	}
	if n := len(prog.Inst); n > envoyRegexProgramSize {
		errs.Warn(p, "%q compiles to about %d instructions; Envoy rejects regexes larger than %d by default (runtime re2.max_program_size.error_level)", re, n, envoyRegexProgramSize)
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
	if strings.Count(v, "%")%2 != 0 {
		errs.Add(p, "%q has an unpaired '%%': values are Envoy format strings (%%VARIABLE%%); write %%%% for a literal percent sign", v)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		errs.Add(p, "header values cannot hold CR, LF or NUL")
	}
}
