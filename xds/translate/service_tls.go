package translate

import (
	"path/filepath"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/config"
)

// servicesTLS is the transport socket of the clusters Envoy uses to reach
// gatehouse when gatehouse serves mTLS: HTTP/2 by ALPN (gRPC-Go refuses a
// TLS client that offers none), the SNI, gatehouse's identity verified
// (its SPIFFE id or DNS name, not merely a chain to the roots, which an
// Envoy's own certificate also has), and Envoy's certificate and roots
// from SDS secrets on Envoy's side, so that a rotation there needs no push.
func servicesTLS(t *config.ServicesTLS) (*corev3.TransportSocket, error) {
	ids := t.ServerIdentities
	if len(ids) == 0 {
		ids = []config.Caller{config.MustCaller("dns:" + t.SNI)}
	}
	vc := &tlsv3.CertificateValidationContext{}
	for _, id := range ids {
		uri, value, partial, ok := id.SAN()
		if !ok {
			continue
		}
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}
		switch {
		case partial && uri:
			m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: value}
		case partial:
			m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: value}
		}
		typ := tlsv3.SubjectAltNameMatcher_DNS
		if uri {
			typ = tlsv3.SubjectAltNameMatcher_URI
		}
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: m})
	}
	ctx := &tlsv3.UpstreamTlsContext{
		Sni: t.SNI,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(t.Certificate)},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
				CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         vc,
					ValidationContextSdsSecretConfig: sdsSecret(t.Validation),
				},
			},
		},
	}
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: tlsSocketName, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// sdsSecret fetches a secret from a file Envoy watches (with its
// directory, where Kubernetes swaps ..data) or from an SDS cluster of
// Envoy's bootstrap (SPIRE's agent).
func sdsSecret(s config.SDSSecret) *tlsv3.SdsSecretConfig {
	src := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3}
	if s.Path != "" {
		src.ConfigSourceSpecifier = &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
			Path:             s.Path,
			WatchedDirectory: &corev3.WatchedDirectory{Path: filepath.Dir(s.Path)},
		}}
	} else {
		src.ConfigSourceSpecifier = &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: s.Cluster},
			}}},
		}}
	}
	return &tlsv3.SdsSecretConfig{Name: s.Name, SdsConfig: src}
}

// serviceHealthCheck asks each gatehouse host for its gRPC health under
// the component's name, so that a replica in its drain delay
// (NOT_SERVING, still serving) stops getting requests before it stops
// accepting them.
func serviceHealthCheck(component string, interval time.Duration) []*corev3.HealthCheck {
	if interval <= 0 {
		return nil
	}
	return []*corev3.HealthCheck{{
		Timeout:            durationpb.New(interval),
		Interval:           durationpb.New(interval),
		UnhealthyThreshold: wrapperspb.UInt32(2),
		HealthyThreshold:   wrapperspb.UInt32(1),
		// Checked at the interval even before the first request, so that
		// a replica draining before Envoy sent it anything is known.
		NoTrafficInterval: durationpb.New(interval),
		HealthChecker: &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{
			ServiceName: component,
		}},
	}}
}
