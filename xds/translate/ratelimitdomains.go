package translate

import (
	"sort"

	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
)

// RateLimitDomains reads the resources as Envoy would: for each rate
// limit domain it will send descriptors in (the domain of the rate limit
// filter of the listener a route configuration is served on), the routes
// that carry rate limit actions, sorted. The rate limit service answers a
// domain it does not declare OK, so a domain here that its config lacks
// limits nothing: `gatehouse validate` checks the two agree.
func (r *Resources) RateLimitDomains() map[string][]string {
	// The filter's domain per route configuration, through the HCMs.
	domainOf := map[string]string{}
	for _, l := range r.Listeners {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					var rl ratelimitfilterv3.RateLimit
					if hf.GetTypedConfig() != nil && hf.GetTypedConfig().UnmarshalTo(&rl) == nil && !hf.GetDisabled() {
						for _, rc := range r.RouteConfigNames(&hcm) {
							domainOf[rc] = rl.GetDomain()
						}
					}
				}
			}
		}
	}
	out := map[string][]string{}
	for _, rc := range r.Routes {
		domain, ok := domainOf[rc.GetName()]
		if !ok {
			continue // no rate limit filter: Envoy never asks
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				if len(rt.GetRoute().GetRateLimits()) == 0 {
					continue
				}
				d := domain
				var per ratelimitfilterv3.RateLimitPerRoute
				if a := rt.GetTypedPerFilterConfig()[filterRateLimit]; a != nil && a.UnmarshalTo(&per) == nil && per.GetDomain() != "" {
					d = per.GetDomain()
				}
				out[d] = appendOnce(out[d], rt.GetName())
			}
		}
	}
	for d := range out {
		sort.Strings(out[d])
	}
	return out
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
