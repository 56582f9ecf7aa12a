package server

import (
	"errors"
	"io"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
)

// keepOpen serves ADS streams whose client half-closed (sent its requests
// and closed its side, as grpcurl does) until the client goes away, instead
// of ending them at once: go-control-plane treats the end of the requests
// as the end of the stream, so such a client never saw an answer. Envoy and
// gRPC never half-close; for them nothing changes.
type keepOpen struct {
	serverv3.Server
}

// StreamAggregatedResources implements the SotW ADS stream.
func (k keepOpen) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return k.Server.StreamAggregatedResources(&sotwStream{st})
}

// DeltaAggregatedResources implements the Delta ADS stream.
func (k keepOpen) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return k.Server.DeltaAggregatedResources(&deltaStream{st})
}

type sotwStream struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
}

func (s *sotwStream) Recv() (*discoveryv3.DiscoveryRequest, error) {
	req, err := s.AggregatedDiscoveryService_StreamAggregatedResourcesServer.Recv()
	if errors.Is(err, io.EOF) {
		<-s.Context().Done()
	}
	return req, err
}

type deltaStream struct {
	discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
}

func (s *deltaStream) Recv() (*discoveryv3.DeltaDiscoveryRequest, error) {
	req, err := s.AggregatedDiscoveryService_DeltaAggregatedResourcesServer.Recv()
	if errors.Is(err, io.EOF) {
		<-s.Context().Done()
	}
	return req, err
}
