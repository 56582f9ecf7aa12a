package translate

import (
	"fmt"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	insecurev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/grpc_service/channel_credentials/insecure/v3"
	tlscredsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/grpc_service/channel_credentials/tls/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// ext_proc for proxyless gRPC clients (gRFC A93, gRPC-Go behind
// GRPC_EXPERIMENTAL_XDS_EXT_PROC_ON_CLIENT=true). Their filter is not
// Envoy's:
//
//   - the server must be named by google_grpc (a target URI and channel
//     credentials the client builds itself), not envoy_grpc: a gRPC client
//     has no gatehouse.extproc cluster;
//   - body modes other than NONE and GRPC are refused (the whole listener
//     or route configuration is NACKed), and the processors gatehouse
//     allows on gRPC routes (hygiene; config validation refuses the rest)
//     need none;
//   - it does not implement xds.route_name, so each route's override
//     carries the route id in its grpc_service's initial metadata, and the
//     RPC's path and authority as request.path and request.host for a
//     stream that has none;
//   - grpc_service.timeout bounds the whole ext_proc stream, which lives
//     as long as the RPC, not one message: none is set, and the RPC's own
//     deadline bounds it (the client implements no message_timeout).
//
// There is one filter, with no stages: gRPC clients get no ext_authz
// from gatehouse, so nothing runs between the two.
//
// The filter is not optional (is_optional false): a client without the
// experimental flag NACKs the listener rather than skip the processors a
// route declares, which would let spoofed identity headers reach the
// backend. It is pushed only on grpc listeners one of whose routes runs a
// processor, so other listeners are unaffected.

// grpcExtProcAttributes are the request attributes a gRPC client offers
// in place of xds.route_name.
var grpcExtProcAttributes = []string{contract.ExtProcPathAttribute, contract.ExtProcHostAttribute}

// grpcExtProcService is the ext_proc server as a gRPC client dials it:
// one target URI (config validation allows one address) and channel
// credentials: TLS with the certificate provider instances of
// xds.services.tls.grpcCertificateProviders when set (validation requires
// them with server.tls), else insecure. The client honours
// credentials pushed by xds only from a server its bootstrap marks
// trusted_xds_server; otherwise the target must be in its bootstrap's
// allowed_grpc_services, with the credentials given there (gRFC A102).
// routeID, when set, goes with every stream as contract.ExtProcRouteMetadata.
func (t *translator) grpcExtProcService(routeID string) (*corev3.GrpcService, error) {
	addrs, ok := t.cfg.ServiceAddresses(config.ComponentExtProc)
	if !ok || len(addrs) == 0 {
		return nil, fmt.Errorf("xds.services.extproc: no address for gRPC clients")
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return nil, fmt.Errorf("xds.services.extproc: %q is not host:port", addrs[0])
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	var creds *anypb.Any
	if st := servicesOf(t.cfg).TLS; st != nil && st.GRPCCertificateProviders != nil {
		g := st.GRPCCertificateProviders
		creds, err = anypb.New(&tlscredsv3.TlsCredentials{
			RootCertificateProvider:     &tlsv3.CommonTlsContext_CertificateProviderInstance{InstanceName: g.Roots},
			IdentityCertificateProvider: &tlsv3.CommonTlsContext_CertificateProviderInstance{InstanceName: g.Identity},
		})
	} else {
		creds, err = anypb.New(&insecurev3.InsecureCredentials{})
	}
	if err != nil {
		return nil, err
	}
	gs := &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_GoogleGrpc_{GoogleGrpc: &corev3.GrpcService_GoogleGrpc{
		TargetUri:                "dns:///" + net.JoinHostPort(host, port),
		ChannelCredentialsPlugin: []*anypb.Any{creds},
		StatPrefix:               config.ComponentExtProc,
	}}}
	if routeID != "" {
		gs.InitialMetadata = []*corev3.HeaderValue{{Key: contract.ExtProcRouteMetadata, Value: routeID}}
	}
	return gs, nil
}

// grpcExtProcFilter is the ext_proc filter of a grpc API listener: off
// unless a route's override turns it on, as on HTTP listeners.
func (t *translator) grpcExtProcFilter() (*hcmv3.HttpFilter, error) {
	gs, err := t.grpcExtProcService("")
	if err != nil {
		return nil, err
	}
	a, err := toAny(&extprocfilterv3.ExternalProcessor{
		GrpcService:      gs,
		FailureModeAllow: servicesOf(t.cfg).ExtProcFailureMode == config.FailOpen,
		ProcessingMode: &extprocfilterv3.ProcessingMode{
			RequestHeaderMode:   extprocfilterv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
			RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
		},
		RequestAttributes: grpcExtProcAttributes,
	})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: filterExtProc, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}, Disabled: true}, nil
}

// grpcPerFilterConfig is the typed_per_filter_config of a route on a grpc
// listener: ext_proc turned on with the route's processing mode, and the
// route id in the stream's metadata.
func (t *translator) grpcPerFilterConfig(id string, n *routeNeeds) (map[string]*anypb.Any, error) {
	if !n.extprocOn || n.extproc.Disabled {
		return nil, nil
	}
	gs, err := t.grpcExtProcService(id)
	if err != nil {
		return nil, err
	}
	// Headers only: the processors a gRPC route may run read no body.
	mode := processingMode(&n.extproc)
	mode.RequestBodyMode, mode.ResponseBodyMode = extprocfilterv3.ProcessingMode_NONE, extprocfilterv3.ProcessingMode_NONE
	mode.RequestTrailerMode, mode.ResponseTrailerMode = extprocfilterv3.ProcessingMode_SKIP, extprocfilterv3.ProcessingMode_SKIP
	a, err := toAny(&extprocfilterv3.ExtProcPerRoute{Override: &extprocfilterv3.ExtProcPerRoute_Overrides{Overrides: &extprocfilterv3.ExtProcOverrides{
		ProcessingMode:    mode,
		RequestAttributes: grpcExtProcAttributes,
		GrpcService:       gs,
	}}})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{filterExtProc: a}, nil
}
