package translate

import (
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/config"
)

// splitThreshold is the encoded size of a listener's route configuration
// above which xds.routeSplit auto splits it by host. Below it one
// resource is cheaper than many (a route change re-sends little anyway).
const splitThreshold = 512 << 10

// splitRoutes decides how a listener's route configuration is served
// (xds.routeSplit). Unsplit, it is one RDS resource, routes/<listener>.
// Split, each virtual host becomes its own RDS resource,
// routes/<listener>/<virtual host>, and the listener's connection manager
// selects one per request by host with Envoy's scoped routes: one SRDS
// resource (ScopedRouteConfiguration) per exact domain, keyed by it, names
// its virtual host's RDS resource.
//
// Scoped routes were chosen over VHDS because VHDS works only on a Delta
// stream of its own (api_type DELTA_GRPC, not ADS) and fetches virtual
// hosts on demand, after the first request for a host: a State-of-the-
// World fleet could not use it, and first requests would wait on the
// control plane. Scoped routes work on SotW and Delta ADS alike, and every
// host's routes are fetched before the listener serves. Their limits:
//   - a scope is selected by exact key, with no wildcard and no default,
//     so only listeners whose every host is exact can be split;
//   - scopes listed inline in the listener must carry their routes inline
//     (Envoy refuses RDS names there), which would put the whole table
//     back into the listener: the scopes are served over SRDS;
//   - Envoy subscribes to SRDS as a wildcard, so every split listener of
//     a node would see every scope: only a config with one http listener
//     is split (routeSplit: host refuses more).
//
// Proxyless gRPC supports neither, so gRPC listeners are never split.
func (t *translator) splitRoutes(l *config.Listener, rc *routev3.RouteConfiguration) []*routev3.RouteConfiguration {
	mode := config.RouteSplitAuto
	if t.cfg.XDS != nil && t.cfg.XDS.RouteSplit != "" {
		mode = t.cfg.XDS.RouteSplit
	}
	if l.Kind != config.ListenerHTTP || mode == config.RouteSplitOff || len(rc.GetVirtualHosts()) == 0 || t.httpListeners() != 1 {
		return []*routev3.RouteConfiguration{rc}
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if !config.ExactHost(d) {
				// routeSplit: host refuses such configs in validation.
				return []*routev3.RouteConfiguration{rc}
			}
		}
	}
	if mode == config.RouteSplitAuto && proto.Size(rc) <= splitThreshold {
		return []*routev3.RouteConfiguration{rc}
	}
	out := make([]*routev3.RouteConfiguration, 0, len(rc.GetVirtualHosts()))
	var scopes []string
	for _, vh := range rc.GetVirtualHosts() {
		name := rc.GetName() + "/" + vh.GetName()
		out = append(out, &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}})
		for _, d := range vh.GetDomains() {
			s := &routev3.ScopedRouteConfiguration{
				Name:                   rc.GetName() + "@" + d,
				RouteConfigurationName: name,
				Key: &routev3.ScopedRouteConfiguration_Key{Fragments: []*routev3.ScopedRouteConfiguration_Key_Fragment{{
					Type: &routev3.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: d},
				}}},
			}
			t.res.ScopedRoutes = append(t.res.ScopedRoutes, s)
			scopes = append(scopes, s.GetName())
		}
	}
	if t.scoped == nil {
		t.scoped = map[string][]string{}
	}
	t.scoped[l.Name] = scopes
	return out
}

func (t *translator) httpListeners() int {
	n := 0
	for i := range t.cfg.Listeners {
		if t.cfg.Listeners[i].Kind == config.ListenerHTTP {
			n++
		}
	}
	return n
}

// setRoutes sets how a listener's connection manager finds its routes:
// RDS, or scoped routes keyed by host over SRDS when they were split.
func (t *translator) setRoutes(hcm *hcmv3.HttpConnectionManager, l *config.Listener) {
	if _, ok := t.scoped[l.Name]; !ok {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteConfigName(l),
		}}
		return
	}
	hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{
		Name: RouteConfigName(l),
		ScopeKeyBuilder: &hcmv3.ScopedRoutes_ScopeKeyBuilder{Fragments: []*hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder{{
			Type: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_{
				HeaderValueExtractor: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor{
					// The host, without a port (HTTP/1's Host is
					// :authority inside Envoy).
					Name:             ":authority",
					ElementSeparator: ":",
					ExtractType:      &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_Index{Index: 0},
				},
			},
		}}},
		RdsConfigSource: adsSource(),
		ConfigSpecifier: &hcmv3.ScopedRoutes_ScopedRds{ScopedRds: &hcmv3.ScopedRds{ScopedRdsConfigSource: adsSource()}},
	}}
}

// RouteConfigNames are the route configurations a connection manager
// uses: its RDS name, or the route configuration of each of its scopes.
func (r *Resources) RouteConfigNames(hcm *hcmv3.HttpConnectionManager) []string {
	if name := hcm.GetRds().GetRouteConfigName(); name != "" {
		return []string{name}
	}
	sr := hcm.GetScopedRoutes()
	if sr == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(s *routev3.ScopedRouteConfiguration) {
		if n := s.GetRouteConfigurationName(); n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, s := range sr.GetScopedRouteConfigurationsList().GetScopedRouteConfigurations() {
		add(s)
	}
	if sr.GetScopedRds() != nil {
		for _, s := range r.ScopedRoutes {
			if strings.HasPrefix(s.GetName(), sr.GetName()+"@") {
				add(s)
			}
		}
	}
	return out
}
