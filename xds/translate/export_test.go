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
// the identity headers; pre and post are the needs of the two ext_proc
// stages.
func PerRouteForTest(id string, a config.AuthzNeeds, pre, post config.ExtProcNeeds) (map[string]*anypb.Any, bool, error) {
	n := &routeNeeds{authzOn: true, extprocOn: true, authz: a, extprocStages: [2]config.ExtProcNeeds{pre, post}, authzFilter: filterExtAuthz}
	m, err := perFilterConfig(id, n)
	return m, !n.authzRuns(), err
}
