package translate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/internal/config"
)

// RateLimitsForTest exposes rateLimits to the external tests.
func RateLimitsForTest(id string, n config.RateLimitNeeds) []*routev3.RateLimit {
	return rateLimits(id, &routeNeeds{ratelimitOn: true, ratelimit: n})
}

// PerRouteForTest exposes perFilterConfig and whether the route strips
// the identity headers.
func PerRouteForTest(id string, a config.AuthzNeeds, e config.ExtProcNeeds) (map[string]*anypb.Any, bool, error) {
	n := &routeNeeds{authzOn: true, extprocOn: true, authz: a, extproc: e, authzFilter: filterExtAuthz}
	m, err := perFilterConfig(id, n)
	return m, !n.authzRuns(), err
}
