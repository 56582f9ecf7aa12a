package translate

import (
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
)

// loadAssignment lists a cluster's endpoints: the EDS resource of a static
// cluster, or the inline assignment of a DNS cluster. The one locality is
// explicit and weighted because proxyless gRPC clients refuse a locality
// without an id and ignore one without a weight (gRFC A27).
func loadAssignment(cl *config.Cluster) *endpointv3.ClusterLoadAssignment {
	loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1)}
	for _, e := range cl.Endpoints {
		host, portStr, err := net.SplitHostPort(e.Address)
		if err != nil {
			continue // refused by validation
		}
		port, err := strconv.ParseUint(portStr, 10, 16)
		if err != nil {
			continue
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier:      &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, uint32(port))}},
			LoadBalancingWeight: wrapperspb.UInt32(max(e.Weight, 1)),
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cl.Name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{loc},
	}
}
