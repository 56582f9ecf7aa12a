package translate

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/internal/config"
)

// The golden case services-tls covers SDS from files; an SDS server
// (SPIRE's agent, a static cluster of Envoy's bootstrap) is named by its
// cluster.
func TestSDSSecretFromCluster(t *testing.T) {
	s := sdsSecret(config.SDSSecret{Name: "spiffe://example.org", Cluster: "spire_agent"})
	api := s.GetSdsConfig().GetApiConfigSource()
	if s.GetName() != "spiffe://example.org" || api.GetApiType() != corev3.ApiConfigSource_GRPC ||
		len(api.GetGrpcServices()) != 1 || api.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "spire_agent" {
		t.Fatalf("sdsSecret(cluster) = %v; want SDS over gRPC from spire_agent", s)
	}
	if err := s.ValidateAll(); err != nil {
		t.Fatal(err)
	}
}
