package translate

import (
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
)

const (
	hcmName       = "envoy.filters.network.http_connection_manager"
	tlsSocketName = "envoy.transport_sockets.tls"
)

// adsSource is the config source of every RDS and EDS reference: the ADS
// stream the resource came on.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func (t *translator) listener(l *config.Listener, p config.Path) (*listenerv3.Listener, error) {
	if l.Kind == config.ListenerGRPC {
		return t.apiListener(l)
	}
	host, portStr, err := net.SplitHostPort(l.Address)
	if err != nil {
		return nil, fmt.Errorf("%s.address: %q is not host:port", p, l.Address)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("%s.address: %q has no valid port", p, l.Address)
	}
	if t.filters == nil {
		var err error
		if t.filters, err = t.httpFilters(); err != nil {
			return nil, err
		}
	}
	filters := t.filters
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:  l.Name,
		CodecType:   hcmv3.HttpConnectionManager_AUTO,
		HttpFilters: filters,
		// Ports are stripped before the virtual host is chosen, as
		// internal/routematch does, so that both pick the same route.
		StripPortMode: &hcmv3.HttpConnectionManager_StripAnyHostPort{StripAnyHostPort: true},
		// Routes are matched on a normalised path, so /admin cannot be
		// reached as //admin, /./admin or /%61dmin past a route's policy.
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		UseRemoteAddress:             wrapperspb.Bool(l.UseRemoteAddress),
		XffNumTrustedHops:            l.XFFNumTrustedHops,
		RequestHeadersTimeout:        dur(l.RequestHeadersTimeout),
		StreamIdleTimeout:            dur(l.StreamIdleTimeout),
		MaxRequestHeadersKb:          wrapperspb.UInt32(l.MaxRequestHeadersKB),
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout: dur(l.IdleTimeout),
			// Underscores in header names smuggle past proxies that map
			// them to dashes; refuse them at the edge.
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
	}
	t.setRoutes(hcm, l)
	hcmAny, err := toAny(hcm)
	if err != nil {
		return nil, err
	}
	chain := &listenerv3.FilterChain{
		Filters: []*listenerv3.Filter{{Name: hcmName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny}}},
	}
	if l.TLS != nil {
		ts, err := downstreamTLS(l.TLS)
		if err != nil {
			return nil, err
		}
		chain.TransportSocket = ts
	}
	return &listenerv3.Listener{
		Name: ListenerName(l),
		// Envoy buffers a body for ext_authz (with_request_body) and
		// ext_proc (buffered modes) within this limit; below what a route
		// asks for, Envoy would answer 413 before gatehouse sees it.
		PerConnectionBufferLimitBytes: t.bufferLimit(),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       host,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}},
		FilterChains: []*listenerv3.FilterChain{chain},
	}, nil
}

// defaultBufferLimit is Envoy's own default per-connection buffer limit.
const defaultBufferLimit = 1 << 20

// bufferLimit is the largest body any route has Envoy buffer for
// gatehouse, and at least Envoy's default.
func (t *translator) bufferLimit() *wrapperspb.UInt32Value {
	limit := uint32(defaultBufferLimit)
	for i := range t.needs {
		n := &t.needs[i]
		if n.authzRuns() && n.authz.RequestBody {
			limit = max(limit, n.authz.MaxRequestBytes)
		}
		if n.extprocOn && !n.extproc.Disabled {
			limit = max(limit, n.extproc.MaxBodyBytes)
		}
		if n.budget.Enabled {
			limit = max(limit, n.budget.MaxBodyBytes)
		}
	}
	return wrapperspb.UInt32(limit)
}

// apiListener is a listener for proxyless gRPC clients (gRFC A27): an
// HTTP connection manager with RDS and the router filter last, preceded
// by ext_proc when one of its routes runs processors (grpcextproc.go),
// and nothing gRPC does not implement.
func (t *translator) apiListener(l *config.Listener) (*listenerv3.Listener, error) {
	router, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	var filters []*hcmv3.HttpFilter
	if t.cfg.ExtProcForGRPC(l) {
		f, err := t.grpcExtProcFilter()
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}})
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: l.Name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: RouteConfigName(l),
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:        ListenerName(l),
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}, nil
}

func downstreamTLS(c *config.ListenerTLS) (*corev3.TransportSocket, error) {
	ctx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams: &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsVersion(c.MinVersion)},
			TlsCertificates: []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(c.CertFile),
				PrivateKey:       fileSource(c.KeyFile),
			}},
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	}
	if c.ClientCAFile != "" {
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(c.ClientCAFile)},
		}
		ctx.RequireClientCertificate = wrapperspb.Bool(c.RequireClientCert)
	}
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

func tlsVersion(v config.TLSVersion) tlsv3.TlsParameters_TlsProtocol {
	if v == config.TLS13 {
		return tlsv3.TlsParameters_TLSv1_3
	}
	return tlsv3.TlsParameters_TLSv1_2
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}
