// Package translate turns gatehouse's config into Envoy resources. It is
// pure: no I/O, no clock, no randomness, and no map iteration that reaches
// the output, so the same config always gives the same resources, byte for
// byte, on every replica.
//
// One builder per Envoy resource type: listener.go (LDS, with the HTTP
// connection manager and gatehouse's filter chain in filters.go), route.go
// (RDS), cluster.go (CDS, with the clusters of gatehouse's own services)
// and endpoint.go (EDS).
//
// Resource names carry provenance, so that a NACK or a config dump points
// straight back to the YAML:
//
//	listener/<name>    an HTTP listener (listeners[].name)
//	<name>             a grpc API listener: the host of the xds:/// target
//	                   gRPC clients dial, which they request by that name
//	routes/<listener>  the route configuration of a listener
//	routes/<listener>/<virtual host>
//	                   one virtual host's route configuration, when the
//	                   listener's routes are split by host (routesplit.go)
//	routes/<listener>@<domain>
//	                   the scope (SRDS) that selects it for one domain
//	<domain>           a virtual host, named after its first domain
//	<route id>         a route (the contract: Envoy's route name is the id)
//	<name>             a cluster, and its EDS load assignment (clusters[].name)
//	gatehouse.<svc>    the clusters of gatehouse's own authz, extproc and
//	                   ratelimit services
package translate

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gatehouse/gatehouse/internal/config"
)

// Resources are the Envoy resources of a config, in config order, with
// what each was made from.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// ScopedRoutes (SRDS) select a route configuration by host, for a
	// listener whose routes are split by host (routesplit.go).
	ScopedRoutes []*routev3.ScopedRouteConfiguration

	// Origins maps each resource name, virtual host and route name to the
	// config elements that produced it (one name can be, say, both a
	// route id and a cluster name).
	Origins map[string][]Origin

	// deps records what each listener needs, for Subset.
	deps map[string]listenerDeps
}

// Origin is where in the config a resource comes from.
type Origin struct {
	// Kind is listener, route_config, virtual_host, route, cluster,
	// endpoints or service.
	Kind string `json:"kind"`
	// Name is the gatehouse name (listener, route id, cluster).
	Name string `json:"name"`
	// Path is the config path (listeners[0], routes[3], clusters[1]).
	Path config.Path `json:"path,omitempty"`
	// Pos is file:line when the config came from a file.
	Pos string `json:"pos,omitempty"`
}

// String renders the origin for messages: routes[3] "orders" (gatehouse.yaml:40).
func (o Origin) String() string {
	s := fmt.Sprintf("%s %q", o.Kind, o.Name)
	if o.Path != "" {
		s = fmt.Sprintf("%s (%s", s, o.Path)
		if o.Pos != "" {
			s += " at " + o.Pos
		}
		s += ")"
	}
	return s
}

type listenerDeps struct {
	kind config.ListenerKind
	// routes are the listener's route configurations: one, or one per
	// virtual host when split (routesplit.go), with the scopes that
	// select them.
	routes   []string
	scopes   []string
	clusters []string
}

// Names of the resources (see the package doc).
const (
	// ServiceClusterPrefix starts the names of gatehouse's own clusters;
	// config validation reserves it.
	ServiceClusterPrefix = "gatehouse."
)

// ListenerName is the Envoy name of a configured listener.
func ListenerName(l *config.Listener) string {
	if l.Kind == config.ListenerGRPC {
		return l.Name
	}
	return "listener/" + l.Name
}

// RouteConfigName is the name of a listener's route configuration.
func RouteConfigName(l *config.Listener) string { return "routes/" + l.Name }

// ServiceClusterName is the cluster name of one of gatehouse's services.
func ServiceClusterName(component string) string { return ServiceClusterPrefix + component }

// Translate builds the Envoy resources of cfg, which must have passed
// config validation. An error means the config holds something
// validation should have refused; it names the config element.
func Translate(cfg *config.Config) (*Resources, error) {
	t := &translator{cfg: cfg, res: &Resources{Origins: map[string][]Origin{}, deps: map[string]listenerDeps{}}}
	if err := t.run(); err != nil {
		return nil, err
	}
	return t.res, nil
}

type translator struct {
	cfg *config.Config
	res *Resources
	// needs caches each route's filter needs, computed once per route.
	needs []routeNeeds
	// filters is the HTTP filter chain, the same on every HTTP listener.
	filters []*hcmv3.HttpFilter
	// authzBody is set when some route needs ext_authz to send the body.
	authzBody bool
	// authzAlt is set when some route's authz failure mode differs from
	// the listener's: a second ext_authz filter then serves those routes.
	authzAlt bool
	// rlMode is the failure mode of the first rate limit filter; rlAlt is
	// set when routes need the other mode too (ratelimitmodes.go).
	rlMode config.FailureMode
	rlAlt  bool
	// budgets is set when some route has a cost budget: the budget
	// filter is then in the chain.
	budgets bool
	// scoped holds the scopes of each listener whose routes were split
	// by host (routesplit.go).
	scoped map[string][]string
}

// addOrigin records that the resource (or route, or virtual host) called
// envoyName was made from the config element at p.
func (t *translator) addOrigin(envoyName, kind, name string, p config.Path) {
	o := Origin{Kind: kind, Name: name, Path: p}
	if t.cfg.Source != nil {
		o.Pos = t.cfg.Locate(p).String()
	}
	for _, have := range t.res.Origins[envoyName] {
		if have == o {
			return
		}
	}
	t.res.Origins[envoyName] = append(t.res.Origins[envoyName], o)
}

func (t *translator) run() error {
	cfg := t.cfg
	t.needs = make([]routeNeeds, len(cfg.Routes))
	for i := range cfg.Routes {
		t.needs[i] = needsOf(cfg, &cfg.Routes[i])
		if n := &t.needs[i]; n.authzRuns() && n.authz.RequestBody {
			t.authzBody = true
		}
		if t.needs[i].budget.Enabled {
			t.budgets = true
		}
	}
	mode := servicesOf(cfg).AuthzFailureMode
	for i := range t.needs {
		n := &t.needs[i]
		n.authzFilterBody = t.authzBody
		n.authzFilter = filterExtAuthz
		if n.authzRuns() && n.authz.FailureMode != mode {
			n.authzFilter = authzAltFilter(mode)
			t.authzAlt = true
		}
	}
	t.rlMode, t.rlAlt = t.rateLimitModes()
	for i := range t.needs {
		t.needs[i].rateLimitFilterMode = t.rlMode
	}
	services, err := t.serviceClusters()
	if err != nil {
		return err
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		p := config.Path("listeners").Index(i)
		rc, clusters, err := t.routeConfig(l)
		if err != nil {
			return err
		}
		rcs := t.splitRoutes(l, rc)
		lis, err := t.listener(l, p)
		if err != nil {
			return err
		}
		t.res.Listeners = append(t.res.Listeners, lis)
		t.addOrigin(lis.GetName(), "listener", l.Name, p)
		names := make([]string, 0, len(rcs))
		for _, rc := range rcs {
			t.res.Routes = append(t.res.Routes, rc)
			t.addOrigin(rc.GetName(), "route_config", l.Name, p)
			names = append(names, rc.GetName())
		}
		if l.Kind == config.ListenerHTTP {
			for _, s := range services {
				clusters = append(clusters, s.GetName())
			}
		}
		for _, s := range t.scoped[l.Name] {
			t.addOrigin(s, "route_config", l.Name, p)
		}
		t.res.deps[lis.GetName()] = listenerDeps{kind: l.Kind, routes: names, scopes: t.scoped[l.Name], clusters: clusters}
	}
	for i := range cfg.Clusters {
		cl := &cfg.Clusters[i]
		p := config.Path("clusters").Index(i)
		c, err := t.cluster(cl, p)
		if err != nil {
			return err
		}
		t.res.Clusters = append(t.res.Clusters, c)
		t.addOrigin(c.GetName(), "cluster", cl.Name, p)
		if cl.Discovery == config.DiscoveryStatic {
			t.res.Endpoints = append(t.res.Endpoints, loadAssignment(cl))
		}
	}
	t.res.Clusters = append(t.res.Clusters, services...)
	return nil
}

// Subset returns the resources a node receives when it is given the named
// listeners (all when names is nil) of the given kind: those listeners,
// their route configurations, the clusters their routes and filters use,
// and those clusters' endpoints. The result shares the resources of r.
func (r *Resources) Subset(names []string, kind config.ListenerKind) *Resources {
	out := &Resources{Origins: r.Origins, deps: r.deps}
	routes := map[string]bool{}
	scopes := map[string]bool{}
	clusters := map[string]bool{}
	for _, l := range r.Listeners {
		d := r.deps[l.GetName()]
		if d.kind != kind || (names != nil && !slices.Contains(names, nameOf(r, l.GetName()))) {
			continue
		}
		out.Listeners = append(out.Listeners, l)
		for _, rc := range d.routes {
			routes[rc] = true
		}
		for _, s := range d.scopes {
			scopes[s] = true
		}
		for _, c := range d.clusters {
			clusters[c] = true
		}
	}
	for _, rc := range r.Routes {
		if routes[rc.GetName()] {
			out.Routes = append(out.Routes, rc)
		}
	}
	for _, s := range r.ScopedRoutes {
		if scopes[s.GetName()] {
			out.ScopedRoutes = append(out.ScopedRoutes, s)
		}
	}
	for _, c := range r.Clusters {
		if clusters[c.GetName()] {
			out.Clusters = append(out.Clusters, c)
		}
	}
	for _, e := range r.Endpoints {
		if clusters[e.GetClusterName()] {
			out.Endpoints = append(out.Endpoints, e)
		}
	}
	return out
}

// nameOf returns the gatehouse listener name of an Envoy listener name.
func nameOf(r *Resources, envoyName string) string {
	for _, o := range r.Origins[envoyName] {
		if o.Kind == "listener" {
			return o.Name
		}
	}
	return envoyName
}

// Count is the number of resources.
func (r *Resources) Count() int {
	return len(r.Listeners) + len(r.Routes) + len(r.ScopedRoutes) + len(r.Clusters) + len(r.Endpoints)
}

// ClustersOf returns the clusters that the named route configurations (and
// the filters of their listeners) send requests to, sorted.
func (r *Resources) ClustersOf(routeConfigs []string) []string {
	want := map[string]bool{}
	for _, n := range routeConfigs {
		want[n] = true
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range r.deps {
		if !slices.ContainsFunc(d.routes, func(rc string) bool { return want[rc] }) {
			continue
		}
		for _, c := range d.clusters {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}
