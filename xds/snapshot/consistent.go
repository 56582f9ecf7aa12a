package snapshot

import (
	"fmt"
	"sort"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/gatehouse/gatehouse/xds/translate"
)

// consistent checks what go-control-plane's Snapshot.Consistent checks
// (every route configuration and load assignment is referenced, and every
// reference resolves) and more: it follows API listeners too, which
// Consistent does not see, and checks that every cluster a route sends to
// is in the snapshot, so a node never gets a route to a cluster it does
// not know. The clusters the filters call (gatehouse.<component>) are not
// looked up here: translate adds them to every http listener's subset
// whenever it adds the filter.
func consistent(sub *translate.Resources) error {
	routes := map[string]bool{}
	for _, l := range sub.Listeners {
		for _, hcm := range connectionManagers(l) {
			for _, name := range sub.RouteConfigNames(hcm) {
				routes[name] = true
			}
		}
	}
	for _, sc := range sub.ScopedRoutes {
		if !routes[sc.GetRouteConfigurationName()] {
			return fmt.Errorf("scoped route %q names route configuration %q, which no listener uses", sc.GetName(), sc.GetRouteConfigurationName())
		}
	}
	have := map[string]*routev3.RouteConfiguration{}
	for _, rc := range sub.Routes {
		have[rc.GetName()] = rc
		if !routes[rc.GetName()] {
			return fmt.Errorf("route configuration %q is not used by any listener", rc.GetName())
		}
	}
	for _, name := range sortedKeys(routes) {
		if have[name] == nil {
			return fmt.Errorf("a listener uses route configuration %q, which is missing", name)
		}
	}
	clusters := map[string]bool{}
	eds := map[string]bool{}
	for _, c := range sub.Clusters {
		clusters[c.GetName()] = true
		if c.GetEdsClusterConfig() != nil {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			eds[name] = true
		}
	}
	for _, e := range sub.Endpoints {
		if !eds[e.GetClusterName()] {
			return fmt.Errorf("load assignment %q belongs to no EDS cluster", e.GetClusterName())
		}
		delete(eds, e.GetClusterName())
	}
	if len(eds) > 0 {
		return fmt.Errorf("EDS clusters %v have no load assignment", sortedKeys(eds))
	}
	for _, rc := range sub.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				for _, c := range routeClusters(r) {
					if !clusters[c] {
						return fmt.Errorf("route %q sends to cluster %q, which is missing", r.GetName(), c)
					}
				}
			}
		}
	}
	return nil
}

func connectionManagers(l *listenerv3.Listener) []*hcmv3.HttpConnectionManager {
	var out []*hcmv3.HttpConnectionManager
	if a := l.GetApiListener().GetApiListener(); a != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if a.UnmarshalTo(hcm) == nil {
			out = append(out, hcm)
		}
	}
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if tc := f.GetTypedConfig(); tc != nil && tc.UnmarshalTo(hcm) == nil {
				out = append(out, hcm)
			}
		}
	}
	return out
}

func routeClusters(r *routev3.Route) []string {
	a := r.GetRoute()
	if a == nil {
		return nil
	}
	if c := a.GetCluster(); c != "" {
		return []string{c}
	}
	var out []string
	for _, w := range a.GetWeightedClusters().GetClusters() {
		out = append(out, w.GetName())
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
