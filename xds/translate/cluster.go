package translate

import (
	"fmt"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

func (t *translator) cluster(cl *config.Cluster, p config.Path) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:           cl.Name,
		ConnectTimeout: dur(cl.ConnectTimeout),
		LbPolicy:       lbPolicy(cl.LBPolicy),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(cl.CircuitBreakers.MaxConnections),
			MaxPendingRequests: wrapperspb.UInt32(cl.CircuitBreakers.MaxPendingRequests),
			MaxRequests:        wrapperspb.UInt32(cl.CircuitBreakers.MaxRequests),
			MaxRetries:         wrapperspb.UInt32(cl.CircuitBreakers.MaxRetries),
		}}},
	}
	switch cl.Discovery {
	case config.DiscoveryStatic:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()}
	case config.DiscoveryStrictDNS, config.DiscoveryLogicalDNS:
		typ := clusterv3.Cluster_STRICT_DNS
		if cl.Discovery == config.DiscoveryLogicalDNS {
			typ = clusterv3.Cluster_LOGICAL_DNS
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
		c.DnsRefreshRate = dur(cl.DNSRefreshRate)
		// Container networks are IPv4; Envoy's default prefers IPv6.
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
		c.LoadAssignment = loadAssignment(cl)
	default:
		return nil, fmt.Errorf("%s.discovery: unknown %q", p, cl.Discovery)
	}
	if cl.LBPolicy == config.LBRingHash {
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			MinimumRingSize: wrapperspb.UInt64(cl.RingHash.MinimumRingSize),
			MaximumRingSize: wrapperspb.UInt64(cl.RingHash.MaximumRingSize),
		}}
	}
	if opts := protocolOptions(cl.Protocol); opts != nil {
		a, err := toAny(opts)
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: a}
	}
	if h := cl.HealthCheck; h != nil {
		c.HealthChecks = []*corev3.HealthCheck{healthCheck(cl, h)}
	}
	if o := cl.OutlierDetection; o != nil {
		c.OutlierDetection = outlierDetection(o)
	}
	if tl := cl.TLS; tl != nil {
		ts, err := upstreamTLS(tl)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

func lbPolicy(p config.LBPolicy) clusterv3.Cluster_LbPolicy {
	switch p {
	case config.LBLeastRequest:
		return clusterv3.Cluster_LEAST_REQUEST
	case config.LBRandom:
		return clusterv3.Cluster_RANDOM
	case config.LBRingHash:
		return clusterv3.Cluster_RING_HASH
	case config.LBMaglev:
		return clusterv3.Cluster_MAGLEV
	}
	return clusterv3.Cluster_ROUND_ROBIN
}

func protocolOptions(p config.UpstreamProtocol) *httpv3.HttpProtocolOptions {
	switch p {
	case config.ProtocolHTTP2:
		return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
			},
		}}
	case config.ProtocolAuto:
		return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}}
	}
	return nil // HTTP/1.1, Envoy's default
}

func healthCheck(cl *config.Cluster, h *config.HealthCheck) *corev3.HealthCheck {
	hc := &corev3.HealthCheck{
		Timeout:            dur(h.Timeout),
		Interval:           dur(h.Interval),
		NoTrafficInterval:  dur(h.NoTrafficInterval),
		HealthyThreshold:   wrapperspb.UInt32(h.HealthyThreshold),
		UnhealthyThreshold: wrapperspb.UInt32(h.UnhealthyThreshold),
	}
	switch h.Kind {
	case config.HealthTCP:
		hc.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	case config.HealthGRPC:
		hc.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{ServiceName: h.ServiceName}}
	default:
		host := h.Host
		if host == "" {
			host = cl.Name
		}
		hh := &corev3.HealthCheck_HttpHealthCheck{Host: host, Path: h.Path}
		for _, s := range h.ExpectedStatuses {
			hh.ExpectedStatuses = append(hh.ExpectedStatuses, &typev3.Int64Range{Start: int64(s), End: int64(s) + 1})
		}
		if cl.Protocol == config.ProtocolHTTP2 {
			hh.CodecClientType = typev3.CodecClientType_HTTP2
		}
		hc.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: hh}
	}
	return hc
}

// outlierDetection sets every field explicitly: Envoy's own defaults turn
// on consecutive-5xx and success-rate detection when unset, so a detector
// the config does not list is written as enforcing 0.
func outlierDetection(o *config.OutlierDetection) *clusterv3.OutlierDetection {
	u := wrapperspb.UInt32
	od := &clusterv3.OutlierDetection{
		Interval:                               dur(o.Interval),
		BaseEjectionTime:                       dur(o.BaseEjectionTime),
		MaxEjectionTime:                        dur(o.MaxEjectionTime),
		MaxEjectionPercent:                     u(o.MaxEjectionPercent),
		Consecutive_5Xx:                        u(o.Consecutive5xx.Threshold),
		EnforcingConsecutive_5Xx:               u(o.Consecutive5xx.Enforcing),
		SplitExternalLocalOriginErrors:         o.SplitExternalLocalOriginErrors,
		SuccessfulActiveHealthCheckUnejectHost: wrapperspb.Bool(o.SuccessfulActiveHealthCheckUnejectHost),
		AlwaysEjectOneHost:                     wrapperspb.Bool(o.AlwaysEjectOneHost),
		EnforcingConsecutiveGatewayFailure:     u(0),
		EnforcingConsecutiveLocalOriginFailure: u(0),
		EnforcingSuccessRate:                   u(0),
		EnforcingLocalOriginSuccessRate:        u(0),
		EnforcingFailurePercentage:             u(0),
		EnforcingFailurePercentageLocalOrigin:  u(0),
	}
	if o.MaxEjectionTimeJitter > 0 {
		od.MaxEjectionTimeJitter = dur(o.MaxEjectionTimeJitter)
	}
	if g := o.ConsecutiveGatewayFailure; g != nil {
		od.ConsecutiveGatewayFailure = u(g.Threshold)
		od.EnforcingConsecutiveGatewayFailure = u(g.Enforcing)
	}
	if l := o.ConsecutiveLocalOriginFailure; l != nil {
		od.ConsecutiveLocalOriginFailure = u(l.Threshold)
		od.EnforcingConsecutiveLocalOriginFailure = u(l.Enforcing)
	}
	if s := o.SuccessRate; s != nil {
		od.SuccessRateMinimumHosts = u(s.MinimumHosts)
		od.SuccessRateRequestVolume = u(s.RequestVolume)
		od.SuccessRateStdevFactor = u(s.StdevFactor)
		od.EnforcingSuccessRate = u(s.Enforcing)
		od.EnforcingLocalOriginSuccessRate = u(s.EnforcingLocalOrigin)
	}
	if f := o.FailurePercentage; f != nil {
		od.FailurePercentageThreshold = u(f.Threshold)
		od.FailurePercentageMinimumHosts = u(f.MinimumHosts)
		od.FailurePercentageRequestVolume = u(f.RequestVolume)
		od.EnforcingFailurePercentage = u(f.Enforcing)
		od.EnforcingFailurePercentageLocalOrigin = u(f.EnforcingLocalOrigin)
	}
	return od
}

func upstreamTLS(c *config.UpstreamTLS) (*corev3.TransportSocket, error) {
	ctx := &tlsv3.UpstreamTlsContext{Sni: c.SNI, CommonTlsContext: &tlsv3.CommonTlsContext{}}
	if c.CAFile != "" {
		vc := &tlsv3.CertificateValidationContext{TrustedCa: fileSource(c.CAFile)}
		if c.SNI != "" {
			// Envoy checks only the chain unless told which name to
			// expect; the SNI is the name we mean to reach.
			vc.MatchTypedSubjectAltNames = []*tlsv3.SubjectAltNameMatcher{{
				SanType: tlsv3.SubjectAltNameMatcher_DNS,
				Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: c.SNI}},
			}}
		}
		ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	}
	if c.CertFile != "" {
		ctx.CommonTlsContext.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(c.CertFile),
			PrivateKey:       fileSource(c.KeyFile),
		}}
	}
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// serviceClusters are the clusters of gatehouse's own gRPC services that
// the filter chain calls, for the configured components.
func (t *translator) serviceClusters() ([]*clusterv3.Cluster, error) {
	svc := servicesOf(t.cfg)
	var out []*clusterv3.Cluster
	for _, comp := range []string{config.ComponentAuthz, config.ComponentExtProc, config.ComponentRateLimit} {
		addrs, ok := t.cfg.ServiceAddresses(comp)
		if !ok {
			continue
		}
		typ := clusterv3.Cluster_STATIC
		var eps []*endpointv3.LbEndpoint
		for _, addr := range addrs {
			host, portStr, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("xds.services.%s: %q is not host:port", comp, addr)
			}
			// Port 0 (an ephemeral listen port, in tests) is translated as
			// is: config validation warns that Envoy cannot reach it.
			port, err := strconv.ParseUint(portStr, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("xds.services.%s: %q has no valid port; set xds.services.%s to the address Envoy dials", comp, addr, comp)
			}
			// A wildcard listen address means "this host" to a client on
			// the same host; dialling 0.0.0.0 is not portable.
			switch host {
			case "", "0.0.0.0":
				host = "127.0.0.1"
			case "::":
				host = "::1"
			}
			// One DNS name makes the whole cluster resolve its endpoints
			// (a headless Service's name resolves to every replica).
			if net.ParseIP(host) == nil {
				typ = clusterv3.Cluster_STRICT_DNS
			}
			eps = append(eps, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, uint32(port))}},
			})
		}
		opts, err := toAny(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
					// Detect a dead gatehouse connection in seconds, not
					// at the next TCP timeout.
					ConnectionKeepalive: &corev3.KeepaliveSettings{
						Interval: durationpb.New(30e9),
						Timeout:  durationpb.New(10e9),
					},
				}},
			},
		}})
		if err != nil {
			return nil, err
		}
		name := ServiceClusterName(comp)
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
			ConnectTimeout:       dur(svc.ConnectTimeout),
			// gRPC multiplexes every check on few connections; Envoy's
			// default of 1024 concurrent requests would turn a burst into
			// overflow denials.
			CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				Priority:           corev3.RoutingPriority_DEFAULT,
				MaxConnections:     wrapperspb.UInt32(1 << 16),
				MaxPendingRequests: wrapperspb.UInt32(1 << 16),
				MaxRequests:        wrapperspb.UInt32(1 << 20),
				MaxRetries:         wrapperspb.UInt32(3),
			}}},
			TypedExtensionProtocolOptions: map[string]*anypb.Any{httpProtocolOptionsKey: opts},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}},
			},
		}
		if typ == clusterv3.Cluster_STRICT_DNS {
			c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
		}
		c.HealthChecks = serviceHealthCheck(comp, svc.HealthCheckInterval.D())
		if svc.TLS != nil {
			if c.TransportSocket, err = servicesTLS(svc.TLS); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
		t.addOrigin(name, "service", comp, config.Path("xds").Field("services").Field(comp))
	}
	return out, nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
