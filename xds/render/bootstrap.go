package render

import (
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/xds/translate"
)

// Bootstrap returns a static Envoy bootstrap that holds exactly the
// resources res pushes over ADS, for `envoy --mode validate`: Envoy's own
// judgement of everything gatehouse renders. Only what ties them to ADS
// is rewritten: each listener's route configuration is inlined in place of
// its RDS reference (each scope's, when its routes are split by host), and each EDS cluster holds its load assignment
// (STATIC) in place of its EDS reference. Nothing else changes.
//
// API listeners (for proxyless gRPC clients) are not Envoy's and are left
// out: render the Envoy flavour (translate.Resources.Subset) first.
func Bootstrap(res *translate.Resources, node *corev3.Node) (*bootstrapv3.Bootstrap, error) {
	routes := map[string]*routev3.RouteConfiguration{}
	for _, rc := range res.Routes {
		routes[rc.GetName()] = rc
	}
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, e := range res.Endpoints {
		loads[e.GetClusterName()] = e
	}
	sr := &bootstrapv3.Bootstrap_StaticResources{}
	for _, c := range res.Clusters {
		c = proto.Clone(c).(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			la, ok := loads[c.GetName()]
			if !ok {
				return nil, fmt.Errorf("render: EDS cluster %q has no load assignment", c.GetName())
			}
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.EdsClusterConfig = nil
			c.LoadAssignment = la
		}
		sr.Clusters = append(sr.Clusters, c)
	}
	for _, l := range res.Listeners {
		if l.GetApiListener() != nil {
			continue
		}
		l = proto.Clone(l).(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if err := inlineRoutes(f, routes, res.ScopedRoutes); err != nil {
					return nil, fmt.Errorf("render: listener %q: %w", l.GetName(), err)
				}
			}
		}
		sr.Listeners = append(sr.Listeners, l)
	}
	return &bootstrapv3.Bootstrap{Node: node, StaticResources: sr}, nil
}

// inlineRoutes replaces an HTTP connection manager's RDS reference by the
// route configuration it names.
func inlineRoutes(f *listenerv3.Filter, routes map[string]*routev3.RouteConfiguration, scopes []*routev3.ScopedRouteConfiguration) error {
	tc := f.GetTypedConfig()
	if tc == nil {
		return nil
	}
	var hcm hcmv3.HttpConnectionManager
	if !tc.MessageIs(&hcm) {
		return nil
	}
	if err := tc.UnmarshalTo(&hcm); err != nil {
		return err
	}
	switch {
	case hcm.GetRds() != nil:
		name := hcm.GetRds().GetRouteConfigName()
		rc, ok := routes[name]
		if !ok {
			return fmt.Errorf("no route configuration %q", name)
		}
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
	case hcm.GetScopedRoutes() != nil:
		// Routes split by host: the scopes (SRDS) are listed inline, each
		// with its route configuration inline (Envoy allows no RDS name
		// in an inline scope).
		sr := hcm.GetScopedRoutes()
		list := &hcmv3.ScopedRouteConfigurationsList{}
		for _, sc := range scopes {
			if !strings.HasPrefix(sc.GetName(), sr.GetName()+"@") {
				continue
			}
			rc, ok := routes[sc.GetRouteConfigurationName()]
			if !ok {
				return fmt.Errorf("no route configuration %q", sc.GetRouteConfigurationName())
			}
			sc = proto.Clone(sc).(*routev3.ScopedRouteConfiguration)
			sc.RouteConfigurationName = ""
			sc.RouteConfiguration = rc
			list.ScopedRouteConfigurations = append(list.ScopedRouteConfigurations, sc)
		}
		sr.ConfigSpecifier = &hcmv3.ScopedRoutes_ScopedRouteConfigurationsList{ScopedRouteConfigurationsList: list}
	default:
		return nil
	}
	a, err := anypb.New(&hcm)
	if err != nil {
		return err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return nil
}
