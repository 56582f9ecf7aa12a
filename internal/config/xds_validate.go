package config

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
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

// ServiceAddresses are the addresses at which Envoy reaches one of
// gatehouse's services: the configured xds.services addresses, or else the
// service's listen address. The second result is false when the component
// is not configured.
func (c *Config) ServiceAddresses(component string) ([]string, bool) {
	var svc XDSServices
	if c.XDS != nil {
		svc = c.XDS.Services
	}
	pick := func(set Addresses, listen string) ([]string, bool) {
		if len(set) > 0 {
			return set, true
		}
		return []string{listen}, true
	}
	switch component {
	case ComponentAuthz:
		if c.Authz != nil {
			return pick(svc.Authz, c.Authz.Address)
		}
	case ComponentExtProc:
		if c.ExtProc != nil {
			return pick(svc.ExtProc, c.ExtProc.Address)
		}
	case ComponentRateLimit:
		if c.RateLimit != nil {
			return pick(svc.RateLimit, c.RateLimit.Address)
		}
	}
	return nil, false
}

func (x *XDS) validate(p Path, c *Config, errs *Errors) {
	sp := p.Field("services")
	for _, s := range []struct {
		field string
		addrs Addresses
	}{
		{"authz", x.Services.Authz}, {"extproc", x.Services.ExtProc}, {"ratelimit", x.Services.RateLimit},
	} {
		seen := map[string]bool{}
		for i, addr := range s.addrs {
			ap := sp.Field(s.field)
			if len(s.addrs) > 1 {
				ap = ap.Index(i)
			}
			if msg := checkHostPort(addr, false); msg != "" {
				errs.Add(ap, "%q %s", addr, msg)
			} else if seen[addr] {
				errs.Add(ap, "%q is listed twice", addr)
			}
			seen[addr] = true
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
		addrs, _ := c.ServiceAddresses(comp)
		for _, addr := range addrs {
			if strings.HasSuffix(addr, ":0") {
				errs.Warn(sp.Field(comp), "%s listens on an ephemeral port (%s), which Envoy cannot be told; set xds.services.%s to the address Envoy dials", comp, addr, comp)
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if !r.hasAction() && r.served(c) {
			errs.Add(Path("routes").Index(i), "route %q is served by a listener but has no action; set one of cluster, weightedClusters, redirect and directResponse", r.ID)
		}
	}
	if x.RouteSplit == RouteSplitHost {
		checkHostSplit(p.Field("routeSplit"), c, errs)
	}
	checkShadowing(c, errs)
}

// checkHostSplit refuses routeSplit: host when an http listener serves a
// route that Envoy's scoped routes could not select: one with no hosts or
// a wildcard host (a scope is chosen by exact host, with no fallback).
func checkHostSplit(p Path, c *Config, errs *Errors) {
	// Envoy subscribes to scoped routes as a wildcard: every split
	// listener of a node would see (and route by) every scope.
	var http []string
	for i := range c.Listeners {
		if c.Listeners[i].Kind == ListenerHTTP {
			http = append(http, c.Listeners[i].Name)
		}
	}
	if len(http) > 1 {
		errs.Add(p, "host splits the routes of a config with one http listener only (Envoy would apply every listener's scopes to each); this config has %d: %s", len(http), strings.Join(http, ", "))
		return
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		var http string
		for j := range c.Listeners {
			if l := &c.Listeners[j]; l.Kind == ListenerHTTP && r.ServedBy(l) {
				http = l.Name
				break
			}
		}
		if http == "" {
			continue
		}
		if len(r.Match.Hosts) == 0 {
			errs.Add(Path("routes").Index(i).Field("match").Field("hosts"), "route %q names no host, but %s is host: every route of listener %q must name exact hosts (or set %s to auto or off)", r.ID, p, http, p)
			continue
		}
		for k, h := range r.Match.Hosts {
			if !ExactHost(h) {
				errs.Add(Path("routes").Index(i).Field("match").Field("hosts").Index(k), "%q is a wildcard, but %s is host: scoped routes select a route configuration by exact host (set %s to auto or off)", h, p, p)
			}
		}
	}
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
