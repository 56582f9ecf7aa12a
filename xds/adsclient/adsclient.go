// Package adsclient is a minimal ADS client, State-of-the-World and
// Delta, that behaves like Envoy on the wire: it subscribes, ACKs (or
// NACKs) every response with its nonce, and reports what it received. The
// tests, the e2e suite and the load scenario use it to drive the control
// plane as many Envoys would.
package adsclient

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// SotW is a State-of-the-World ADS stream.
type SotW struct {
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	sent   bool
}

// NewSotW opens a stream on conn for node.
func NewSotW(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) (*SotW, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &SotW{stream: s, node: node}, nil
}

// Request subscribes to typeURL (names nil = wildcard), as a first
// request with no version or nonce.
func (s *SotW) Request(typeURL string, names ...string) error {
	return s.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names})
}

// Resume subscribes to typeURL on a new stream naming the version the
// client already holds, as Envoy does when it reconnects.
func (s *SotW) Resume(typeURL, version string, names ...string) error {
	return s.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: version, ResourceNames: names})
}

func (s *SotW) send(req *discoveryv3.DiscoveryRequest) error {
	if !s.sent {
		req.Node = s.node // Envoy and gRPC send the node on the first request
		s.sent = true
	}
	return s.stream.Send(req)
}

// Recv waits for the next response.
func (s *SotW) Recv() (*discoveryv3.DiscoveryResponse, error) { return s.stream.Recv() }

// Ack accepts resp, keeping the subscription to names.
func (s *SotW) Ack(resp *discoveryv3.DiscoveryResponse, names ...string) error {
	return s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(), ResourceNames: names,
	})
}

// Nack rejects resp: the request names the last accepted version and
// carries the error detail, as Envoy's does.
func (s *SotW) Nack(resp *discoveryv3.DiscoveryResponse, lastAccepted, detail string, names ...string) error {
	return s.send(&discoveryv3.DiscoveryRequest{
		TypeUrl: resp.GetTypeUrl(), VersionInfo: lastAccepted, ResponseNonce: resp.GetNonce(), ResourceNames: names,
		ErrorDetail: &status.Status{Code: 3, Message: detail},
	})
}

// CloseSend ends the client side of the stream.
func (s *SotW) CloseSend() error { return s.stream.CloseSend() }

// Delta is a Delta (incremental) ADS stream.
type Delta struct {
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *corev3.Node
	sent   bool
}

// NewDelta opens a delta stream on conn for node.
func NewDelta(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) (*Delta, error) {
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	return &Delta{stream: s, node: node}, nil
}

func (d *Delta) send(req *discoveryv3.DeltaDiscoveryRequest) error {
	if !d.sent {
		req.Node = d.node
		d.sent = true
	}
	return d.stream.Send(req)
}

// Subscribe subscribes to typeURL: names nil is the wildcard.
func (d *Delta) Subscribe(typeURL string, names ...string) error {
	return d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names})
}

// Resume subscribes to typeURL on a new stream naming the versions of
// the resources the client already holds, as Envoy does when it
// reconnects.
func (d *Delta) Resume(typeURL string, have map[string]string, names ...string) error {
	return d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names, InitialResourceVersions: have})
}

// Recv waits for the next response.
func (d *Delta) Recv() (*discoveryv3.DeltaDiscoveryResponse, error) { return d.stream.Recv() }

// Ack accepts resp.
func (d *Delta) Ack(resp *discoveryv3.DeltaDiscoveryResponse) error {
	return d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()})
}

// Nack rejects resp.
func (d *Delta) Nack(resp *discoveryv3.DeltaDiscoveryResponse, detail string) error {
	return d.send(&discoveryv3.DeltaDiscoveryRequest{
		TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: 3, Message: detail},
	})
}

// CloseSend ends the client side of the stream.
func (d *Delta) CloseSend() error { return d.stream.CloseSend() }

// Names lists the resource names of a delta response.
func Names(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	out := make([]string, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

// ErrUnexpected reports a response of an unexpected type.
func ErrUnexpected(got, want string) error {
	return fmt.Errorf("got a %s response; want %s", got, want)
}
