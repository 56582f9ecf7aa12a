package config

import "strings"

// XDS configures the xDS control plane (ADS, State-of-the-World and Delta):
// which nodes receive which listeners, and how Envoy reaches gatehouse's
// own services. The listeners, clusters and route actions it translates are
// the top-level listeners:, clusters: and the inline action of each route.
type XDS struct {
	// Address is the gRPC listen address of the ADS server.
	Address string `yaml:"address" default:"127.0.0.1:9194"`
	// Services are the addresses at which Envoy reaches gatehouse's
	// ext_authz, ext_proc and rate limit servers. They are often not the
	// listen addresses (in docker-compose Envoy dials gatehouse:9191 while
	// gatehouse listens on 0.0.0.0:9191); empty means the listen address.
	Services XDSServices `yaml:"services"`
	// NodeGroups decide which listeners a node receives, by node id or by
	// node cluster. A node in no group gets DefaultGroup, or every listener
	// when DefaultGroup is empty.
	NodeGroups []NodeGroup `yaml:"nodeGroups,omitempty"`
	// DefaultGroup names the group of nodes that no group claims; empty
	// means the built-in group "default" with every listener.
	DefaultGroup string `yaml:"defaultGroup,omitempty"`
	// RouteSplit decides how an Envoy (http) listener's routes are
	// grouped into RDS resources. "host" gives each virtual host its own
	// route configuration, chosen per request by the Host header (Envoy's
	// scoped routes): a route change sends only its host's unit, and no
	// single resource grows with the whole table; it needs every route of
	// the listener to name exact hosts (no "*", no wildcard, no route
	// without hosts), and matches the host case-sensitively. "off" keeps
	// one route configuration per listener. "auto" splits a listener by
	// host when it can and its route configuration would encode to more
	// than 512KiB. gRPC (API) listeners always have one route
	// configuration: proxyless gRPC supports neither scoped routes nor
	// VHDS.
	RouteSplit RouteSplit `yaml:"routeSplit" default:"auto"`
}

// RouteSplit is how a listener's routes are grouped into RDS resources.
type RouteSplit string

// Route split modes.
const (
	RouteSplitAuto RouteSplit = "auto"
	RouteSplitHost RouteSplit = "host"
	RouteSplitOff  RouteSplit = "off"
)

// EnumValues implements Enum.
func (RouteSplit) EnumValues() []string { return []string{"auto", "host", "off"} }

// EnumNoun implements Enum.
func (RouteSplit) EnumNoun() string { return "a route split mode" }

// ExactHost reports whether a route's host pattern names one host: no
// wildcard. Only such hosts can key a scoped route configuration.
func ExactHost(h string) bool { return h != "" && !strings.Contains(h, "*") }

// XDSServices is how Envoy's filters reach gatehouse's gRPC services.
type XDSServices struct {
	// Authz is host:port of the ext_authz server as Envoy dials it, or a
	// list of them (one per replica, when no DNS name resolves to all).
	Authz Addresses `yaml:"authz,omitempty"`
	// ExtProc is host:port of the ext_proc server as Envoy dials it, or a
	// list of them.
	ExtProc Addresses `yaml:"extproc,omitempty"`
	// RateLimit is host:port of the rate limit server as Envoy dials it,
	// or a list of them: Envoy balances the calls, and the replicas share
	// their counters in Redis.
	RateLimit Addresses `yaml:"ratelimit,omitempty"`
	// ConnectTimeout bounds Envoy's connection attempts to gatehouse.
	ConnectTimeout Duration `yaml:"connectTimeout" default:"1s"`
	// AuthzTimeout bounds one ext_authz Check as Envoy waits for it.
	AuthzTimeout Duration `yaml:"authzTimeout" default:"500ms"`
	// AuthzFailureMode is what Envoy does when ext_authz cannot be reached
	// or fails: closed (deny with 403) or open (let the request through,
	// with the client's own identity headers stripped first).
	AuthzFailureMode FailureMode `yaml:"authzFailureMode" default:"closed"`
	// ExtProcMessageTimeout bounds each ext_proc message exchange.
	ExtProcMessageTimeout Duration `yaml:"extprocMessageTimeout" default:"500ms"`
	// ExtProcFailureMode is what Envoy does when ext_proc fails.
	ExtProcFailureMode FailureMode `yaml:"extprocFailureMode" default:"closed"`
	// RateLimitTimeout bounds one ShouldRateLimit call. It must be longer
	// than ratelimit.store.timeout, so that on a slow Redis gatehouse's
	// failure mode answers before Envoy gives up on its own.
	RateLimitTimeout Duration `yaml:"ratelimitTimeout" default:"250ms"`
	// RateLimitFailureMode is what Envoy does when the rate limit service
	// itself cannot answer in time (a Redis outage is the service's own
	// decision, ratelimit.failureMode). Absent, Envoy follows the
	// limiter's per-tier failure modes: requests of tiers that fail open
	// go through, those that fail closed are refused (two rate limit
	// filters, one per mode; docs/ratelimit.md). open or closed makes it
	// one filter with that mode for every tier.
	RateLimitFailureMode FailureMode `yaml:"ratelimitFailureMode,omitempty"`
	// TLS makes Envoy reach the services over mutual TLS: required when
	// server.tls is set.
	TLS *ServicesTLS `yaml:"tls,omitempty"`
	// HealthCheckInterval is how often Envoy asks each gatehouse host for
	// its gRPC health, so that a draining replica (NOT_SERVING during
	// server.drainDelay) stops getting requests before it stops
	// accepting; 0s turns the checks off.
	HealthCheckInterval Duration `yaml:"healthCheckInterval" default:"1s"`
}

// ServicesTLS is the TLS Envoy speaks to gatehouse's services. Envoy's
// own certificate and trust roots come from SDS secrets on Envoy's side
// (a watched file, or an SDS server such as SPIRE's agent), so that Envoy
// picks up a rotated certificate without a push from gatehouse.
type ServicesTLS struct {
	// SNI is the server name Envoy sends (the Service's DNS name).
	SNI string `yaml:"sni,omitempty"`
	// ServerIdentities are what gatehouse's certificate must carry, as
	// caller patterns: spiffe://td/path, spiffe://td/path/*, dns:name,
	// dns:*.suffix. Default: dns:<sni>.
	ServerIdentities []Caller `yaml:"serverIdentities,omitempty"`
	// Certificate is the SDS secret of Envoy's client certificate.
	Certificate SDSSecret `yaml:"certificate"`
	// Validation is the SDS secret of the roots that verify gatehouse.
	Validation SDSSecret `yaml:"validation"`
	// GRPCCertificateProviders is how proxyless gRPC clients speak mTLS to
	// gatehouse's ext_proc server (routes of grpc listeners with
	// processors): certificate provider instances of the clients' own
	// bootstrap, so that they too pick up a rotated certificate without a
	// push. They verify gatehouse's certificate against the host of
	// xds.services.extproc.
	GRPCCertificateProviders *GRPCCertificateProviders `yaml:"grpcCertificateProviders,omitempty"`
}

// GRPCCertificateProviders name certificate provider instances in the
// certificate_providers of proxyless gRPC clients' bootstrap (gRFC A29;
// file_watcher reads and re-reads PEM files).
type GRPCCertificateProviders struct {
	// Identity is the instance of the client certificate a gRPC client
	// presents to gatehouse (server.tls must allow it for extproc).
	Identity string `yaml:"identity"`
	// Roots is the instance of the roots that verify gatehouse's
	// certificate; it may be the same instance as Identity.
	Roots string `yaml:"roots"`
}

// SDSSecret names a secret Envoy fetches itself: from a file it watches
// (path), or from an SDS server that its bootstrap declares as a static
// cluster (cluster; SPIRE's agent serves its SVID and bundles this way).
type SDSSecret struct {
	// Name is the secret's name (a SPIFFE id, or "ROOTCA", with SPIRE).
	Name string `yaml:"name"`
	// Path is the file on Envoy's host that holds the secret (an SDS
	// DiscoveryResponse in YAML, as envoy/sds-*.yaml); Envoy watches it
	// and its directory.
	Path string `yaml:"path,omitempty"`
	// Cluster is a static cluster of Envoy's bootstrap that serves SDS.
	Cluster string `yaml:"cluster,omitempty"`
}

// NodeGroup is a set of nodes that receive the same listeners.
type NodeGroup struct {
	// Name identifies the group in /xds/nodes, metrics and DefaultGroup.
	Name string `yaml:"name"`
	// NodeIDs are node ids (Envoy's --service-node / node.id) of members.
	NodeIDs []string `yaml:"nodeIds,omitempty"`
	// NodeClusters are node clusters (node.cluster) of members. A match by
	// id wins over a match by cluster.
	NodeClusters []string `yaml:"nodeClusters,omitempty"`
	// Listeners are the listeners the group receives; empty means all.
	Listeners []string `yaml:"listeners,omitempty"`
}

// ListenerKind says who consumes a listener.
type ListenerKind string

// Listener kinds.
const (
	// ListenerHTTP is an Envoy listener with gatehouse's filter chain.
	ListenerHTTP ListenerKind = "http"
	// ListenerGRPC is an API listener for proxyless gRPC clients: its
	// name is the host of their xds:/// target.
	ListenerGRPC ListenerKind = "grpc"
)

// EnumValues implements Enum.
func (ListenerKind) EnumValues() []string { return []string{"http", "grpc"} }

// EnumNoun implements Enum.
func (ListenerKind) EnumNoun() string { return "a listener kind" }

// Listener is a listener served by the control plane: an Envoy HTTP
// listener, or an API listener for proxyless gRPC clients.
type Listener struct {
	// Name is the listener's name: 1-64 lower-case letters, digits, '.',
	// '_' or '-'. For a grpc listener it is the host of the clients'
	// xds:/// target (xds:///echo.internal → echo.internal).
	Name string `yaml:"name"`
	// Kind is http (an Envoy listener) or grpc (an API listener for proxyless
	// gRPC clients).
	Kind ListenerKind `yaml:"kind" default:"http"`
	// Address is host:port Envoy binds (http listeners only).
	Address string `yaml:"address,omitempty"`
	// TLS terminates TLS (and optionally verifies client certificates).
	TLS *ListenerTLS `yaml:"tls,omitempty"`
	// UseRemoteAddress makes Envoy trust the connection's peer address
	// rather than X-Forwarded-For (true at the edge).
	UseRemoteAddress bool `yaml:"useRemoteAddress" default:"true"`
	// XFFNumTrustedHops is how many X-Forwarded-For hops in front of Envoy
	// are trusted proxies.
	XFFNumTrustedHops uint32 `yaml:"xffNumTrustedHops" default:"0"`
	// RequestHeadersTimeout bounds how long a client may take to send its
	// headers (slowloris); 0 disables.
	RequestHeadersTimeout Duration `yaml:"requestHeadersTimeout" default:"10s"`
	// StreamIdleTimeout closes a stream with no activity for this long.
	StreamIdleTimeout Duration `yaml:"streamIdleTimeout" default:"5m"`
	// IdleTimeout closes a downstream connection with no streams.
	IdleTimeout Duration `yaml:"idleTimeout" default:"1h"`
	// MaxRequestHeadersKB bounds the request headers (1-8192 KiB).
	MaxRequestHeadersKB uint32 `yaml:"maxRequestHeadersKb" default:"60"`
}

// TLSVersion is a TLS protocol version.
type TLSVersion string

// TLS versions.
const (
	TLS12 TLSVersion = "1.2"
	TLS13 TLSVersion = "1.3"
)

// EnumValues implements Enum.
func (TLSVersion) EnumValues() []string { return []string{"1.2", "1.3"} }

// EnumNoun implements Enum.
func (TLSVersion) EnumNoun() string { return "a TLS version" }

// ListenerTLS terminates TLS with certificates read by Envoy from its own
// file system (no SDS). Paths are absolute paths on the Envoy host.
type ListenerTLS struct {
	// CertFile is the server certificate chain (PEM), an absolute path on the
	// Envoy host.
	CertFile string `yaml:"certFile"`
	// KeyFile is the private key of CertFile, an absolute path on the Envoy
	// host.
	KeyFile string `yaml:"keyFile"`
	// ClientCAFile turns on mutual TLS: client certificates must chain to
	// these CAs. Envoy then sends the peer certificate to ext_authz.
	ClientCAFile string `yaml:"clientCaFile,omitempty"`
	// RequireClientCert refuses connections without a client certificate
	// (with ClientCAFile). When false a certificate is verified if sent.
	RequireClientCert bool `yaml:"requireClientCert" default:"true"`
	// MinVersion is the oldest TLS version accepted: 1.2 or 1.3.
	MinVersion TLSVersion `yaml:"minVersion" default:"1.2"`
}

// Discovery is how a cluster's endpoints are found.
type Discovery string

// Discovery types.
const (
	// DiscoveryStatic serves the listed endpoints over EDS.
	DiscoveryStatic Discovery = "static"
	// DiscoveryStrictDNS resolves each host and uses every address.
	DiscoveryStrictDNS Discovery = "strict_dns"
	// DiscoveryLogicalDNS resolves one host and connects to the first
	// address (large DNS-balanced services).
	DiscoveryLogicalDNS Discovery = "logical_dns"
)

// EnumValues implements Enum.
func (Discovery) EnumValues() []string { return []string{"static", "strict_dns", "logical_dns"} }

// EnumNoun implements Enum.
func (Discovery) EnumNoun() string { return "a discovery type" }

// LBPolicy is a cluster's load balancing policy.
type LBPolicy string

// Load balancing policies.
const (
	LBRoundRobin   LBPolicy = "round_robin"
	LBLeastRequest LBPolicy = "least_request"
	LBRandom       LBPolicy = "random"
	LBRingHash     LBPolicy = "ring_hash"
	LBMaglev       LBPolicy = "maglev"
)

// EnumValues implements Enum.
func (LBPolicy) EnumValues() []string {
	return []string{"round_robin", "least_request", "random", "ring_hash", "maglev"}
}

// EnumNoun implements Enum.
func (LBPolicy) EnumNoun() string { return "a load balancing policy" }

// UpstreamProtocol is the HTTP protocol Envoy speaks to a cluster.
type UpstreamProtocol string

// Upstream protocols.
const (
	ProtocolHTTP1 UpstreamProtocol = "http1"
	ProtocolHTTP2 UpstreamProtocol = "http2"
	// ProtocolAuto follows the downstream protocol (ALPN over TLS).
	ProtocolAuto UpstreamProtocol = "auto"
)

// EnumValues implements Enum.
func (UpstreamProtocol) EnumValues() []string { return []string{"http1", "http2", "auto"} }

// EnumNoun implements Enum.
func (UpstreamProtocol) EnumNoun() string { return "an upstream protocol" }

// Cluster is an upstream cluster routes send traffic to.
type Cluster struct {
	// Name is the cluster's name, also its Envoy cluster name.
	Name string `yaml:"name"`
	// Discovery is how endpoints are found: static (IP addresses), strict_dns
	// (every address a name resolves to) or logical_dns (one name, the first
	// address).
	Discovery Discovery `yaml:"discovery" default:"static"`
	// Endpoints are the upstream hosts: addresses for static, DNS names
	// for strict_dns, exactly one DNS name for logical_dns.
	Endpoints []Endpoint `yaml:"endpoints"`
	// Protocol is the upstream HTTP version: http1, http2 (also for gRPC
	// upstreams) or auto (the protocol the client spoke to Envoy).
	Protocol UpstreamProtocol `yaml:"protocol" default:"http1"`
	// LBPolicy is the load balancing policy: round_robin, least_request, random,
	// ring_hash or maglev.
	LBPolicy LBPolicy `yaml:"lbPolicy" default:"round_robin"`
	// RingHash tunes ring_hash (ignored by other policies).
	RingHash RingHash `yaml:"ringHash"`
	// ConnectTimeout bounds a new upstream connection.
	ConnectTimeout Duration `yaml:"connectTimeout" default:"5s"`
	// DNSRefreshRate is how often DNS clusters re-resolve.
	DNSRefreshRate Duration `yaml:"dnsRefreshRate" default:"5s"`
	// CircuitBreakers bound what Envoy sends this cluster at once.
	CircuitBreakers CircuitBreakers `yaml:"circuitBreakers"`
	// HealthCheck actively probes each endpoint.
	HealthCheck *HealthCheck `yaml:"healthCheck,omitempty"`
	// OutlierDetection ejects endpoints that fail passively observed
	// requests.
	OutlierDetection *OutlierDetection `yaml:"outlierDetection,omitempty"`
	// TLS originates TLS to the endpoints.
	TLS *UpstreamTLS `yaml:"tls,omitempty"`
}

// Endpoint is one upstream host.
type Endpoint struct {
	// Address is host:port (an IP for static discovery, a DNS name for
	// the DNS types).
	Address string `yaml:"address"`
	// Weight is the endpoint's load balancing weight (1-128).
	Weight uint32 `yaml:"weight" default:"1"`
}

// RingHash tunes the ring_hash load balancer.
type RingHash struct {
	// MinimumRingSize is the fewest entries of the hash ring.
	MinimumRingSize uint64 `yaml:"minimumRingSize" default:"1024"`
	// MaximumRingSize is the most entries of the hash ring (at most 8388608).
	MaximumRingSize uint64 `yaml:"maximumRingSize" default:"8388608"`
}

// CircuitBreakers are the default-priority thresholds of a cluster
// (Envoy's defaults: 1024 connections, pending and requests, 3 retries).
type CircuitBreakers struct {
	// MaxConnections bounds the connections to the cluster.
	MaxConnections uint32 `yaml:"maxConnections" default:"1024"`
	// MaxPendingRequests bounds the requests waiting for a connection.
	MaxPendingRequests uint32 `yaml:"maxPendingRequests" default:"1024"`
	// MaxRequests bounds the requests in flight to the cluster.
	MaxRequests uint32 `yaml:"maxRequests" default:"1024"`
	// MaxRetries bounds the retries in flight to the cluster.
	MaxRetries uint32 `yaml:"maxRetries" default:"3"`
}

// HealthCheckKind is the protocol of an active health check.
type HealthCheckKind string

// Health check kinds.
const (
	HealthHTTP HealthCheckKind = "http"
	HealthTCP  HealthCheckKind = "tcp"
	HealthGRPC HealthCheckKind = "grpc"
)

// EnumValues implements Enum.
func (HealthCheckKind) EnumValues() []string { return []string{"http", "tcp", "grpc"} }

// EnumNoun implements Enum.
func (HealthCheckKind) EnumNoun() string { return "a health check kind" }

// HealthCheck probes each endpoint of a cluster.
type HealthCheck struct {
	// Kind is the probe protocol: http, tcp (connect only) or grpc
	// (grpc.health.v1).
	Kind HealthCheckKind `yaml:"kind" default:"http"`
	// Path is the HTTP path probed (http).
	Path string `yaml:"path" default:"/healthz"`
	// Host is the Host header of HTTP probes (default: the cluster name).
	Host string `yaml:"host,omitempty"`
	// ExpectedStatuses are accepted HTTP statuses (default 200).
	ExpectedStatuses []uint32 `yaml:"expectedStatuses,omitempty"`
	// ServiceName is the gRPC health service name (grpc).
	ServiceName string `yaml:"serviceName,omitempty"`
	// Interval is the time between two probes of an endpoint.
	Interval Duration `yaml:"interval" default:"10s"`
	// Timeout bounds one probe; at most Interval.
	Timeout Duration `yaml:"timeout" default:"2s"`
	// HealthyThreshold is how many probes in a row must pass to mark an endpoint
	// healthy.
	HealthyThreshold uint32 `yaml:"healthyThreshold" default:"2"`
	// UnhealthyThreshold is how many probes in a row must fail to mark an
	// endpoint unhealthy.
	UnhealthyThreshold uint32 `yaml:"unhealthyThreshold" default:"3"`
	// NoTrafficInterval is the probe interval while the cluster gets no
	// traffic.
	NoTrafficInterval Duration `yaml:"noTrafficInterval" default:"60s"`
}

// OutlierDetection ejects endpoints by the outcome of real requests. Only
// the detectors listed are enforced, except consecutive5xx, which is on
// (5 in a row) unless its enforcing is set to 0 — Envoy's own default.
type OutlierDetection struct {
	// Interval between ejection sweeps.
	Interval Duration `yaml:"interval" default:"10s"`
	// BaseEjectionTime is multiplied by the number of times a host was
	// ejected.
	BaseEjectionTime Duration `yaml:"baseEjectionTime" default:"30s"`
	// MaxEjectionTime caps the ejection time.
	MaxEjectionTime Duration `yaml:"maxEjectionTime" default:"300s"`
	// MaxEjectionTimeJitter adds random jitter to ejections.
	MaxEjectionTimeJitter Duration `yaml:"maxEjectionTimeJitter" default:"0s"`
	// MaxEjectionPercent caps the share of hosts ejected at once (0-100).
	MaxEjectionPercent uint32 `yaml:"maxEjectionPercent" default:"10"`
	// Consecutive5xx ejects after that many 5xx in a row.
	Consecutive5xx Consecutive `yaml:"consecutive5xx"`
	// ConsecutiveGatewayFailure ejects after that many 502/503/504 in a row.
	ConsecutiveGatewayFailure *Consecutive `yaml:"consecutiveGatewayFailure,omitempty"`
	// SplitExternalLocalOriginErrors counts connection failures and
	// timeouts (local origin) apart from upstream HTTP errors.
	SplitExternalLocalOriginErrors bool `yaml:"splitExternalLocalOriginErrors" default:"false"`
	// ConsecutiveLocalOriginFailure ejects after that many local-origin
	// failures in a row (needs splitExternalLocalOriginErrors).
	ConsecutiveLocalOriginFailure *Consecutive `yaml:"consecutiveLocalOriginFailure,omitempty"`
	// SuccessRate ejects hosts whose success rate is far below the mean.
	SuccessRate *SuccessRate `yaml:"successRate,omitempty"`
	// FailurePercentage ejects hosts whose failure share is above a
	// threshold (proxyless gRPC implements this one and successRate).
	FailurePercentage *FailurePercentage `yaml:"failurePercentage,omitempty"`
	// SuccessfulActiveHealthCheckUnejectHost returns an ejected host as
	// soon as an active health check passes.
	SuccessfulActiveHealthCheckUnejectHost bool `yaml:"successfulActiveHealthCheckUnejectHost" default:"false"`
	// AlwaysEjectOneHost ejects one host even when maxEjectionPercent
	// rounds down to none.
	AlwaysEjectOneHost bool `yaml:"alwaysEjectOneHost" default:"false"`
}

// Consecutive is a consecutive-failures detector.
type Consecutive struct {
	// Threshold is the number of failures in a row that ejects.
	Threshold uint32 `yaml:"threshold" default:"5"`
	// Enforcing is the chance (0-100 %) that a detection ejects.
	Enforcing uint32 `yaml:"enforcing" default:"100"`
}

// SuccessRate is the statistical success-rate detector.
type SuccessRate struct {
	// MinimumHosts is how many endpoints must have RequestVolume requests in an
	// interval for the detector to run.
	MinimumHosts uint32 `yaml:"minimumHosts" default:"5"`
	// RequestVolume is the fewest requests in an interval for an endpoint to
	// count.
	RequestVolume uint32 `yaml:"requestVolume" default:"100"`
	// StdevFactor/1000 standard deviations below the mean ejects (1900 =
	// 1.9).
	StdevFactor uint32 `yaml:"stdevFactor" default:"1900"`
	// Enforcing is the chance (0-100 percent) that a detected endpoint is
	// ejected.
	Enforcing uint32 `yaml:"enforcing" default:"100"`
	// EnforcingLocalOrigin is Enforcing for local-origin failures (with
	// splitExternalLocalOriginErrors).
	EnforcingLocalOrigin uint32 `yaml:"enforcingLocalOrigin" default:"100"`
}

// FailurePercentage is the failure-percentage detector.
type FailurePercentage struct {
	// Threshold is the failure percentage (0-100) that ejects.
	Threshold uint32 `yaml:"threshold" default:"85"`
	// MinimumHosts is how many endpoints must have RequestVolume requests in an
	// interval for the detector to run.
	MinimumHosts uint32 `yaml:"minimumHosts" default:"5"`
	// RequestVolume is the fewest requests in an interval for an endpoint to
	// count.
	RequestVolume uint32 `yaml:"requestVolume" default:"50"`
	// Enforcing is the chance (0-100 percent) that a detected endpoint is
	// ejected.
	Enforcing uint32 `yaml:"enforcing" default:"100"`
	// EnforcingLocalOrigin is Enforcing for local-origin failures (with
	// splitExternalLocalOriginErrors).
	EnforcingLocalOrigin uint32 `yaml:"enforcingLocalOrigin" default:"100"`
}

// UpstreamTLS originates TLS to a cluster. Paths are on the Envoy host.
type UpstreamTLS struct {
	// SNI is the server name sent and verified (default: none sent).
	SNI string `yaml:"sni,omitempty"`
	// CAFile verifies the upstream certificate; empty skips verification,
	// which validation refuses unless InsecureSkipVerify is set.
	CAFile string `yaml:"caFile,omitempty"`
	// CertFile and KeyFile present a client certificate (mTLS upstream).
	CertFile string `yaml:"certFile,omitempty"`
	// KeyFile is the private key of CertFile.
	KeyFile string `yaml:"keyFile,omitempty"`
	// InsecureSkipVerify knowingly skips verifying the upstream certificate (no
	// CAFile).
	InsecureSkipVerify bool `yaml:"insecureSkipVerify" default:"false"`
}

// RouteAction is what a matched route does: send to a cluster (or split
// over weighted clusters), redirect, or answer directly. It is written
// inline in Route. Exactly one of cluster, weightedClusters, redirect and
// directResponse is set.
type RouteAction struct {
	// Cluster is the name of the upstream cluster.
	Cluster string `yaml:"cluster,omitempty"`
	// WeightedClusters split traffic by weight (canaries).
	WeightedClusters []WeightedCluster `yaml:"weightedClusters,omitempty"`
	// Redirect answers with an HTTP redirect.
	Redirect *Redirect `yaml:"redirect,omitempty"`
	// DirectResponse answers with a fixed status and body.
	DirectResponse *DirectResponse `yaml:"directResponse,omitempty"`
	// Listeners are the listeners that serve the route; empty means every
	// http listener (grpc listeners serve only routes that name them).
	Listeners []string `yaml:"listeners,omitempty"`
	// Timeout bounds the whole upstream exchange; 0 disables it.
	Timeout Duration `yaml:"timeout" default:"15s"`
	// IdleTimeout closes a stream idle this long (0: the listener's).
	IdleTimeout Duration `yaml:"idleTimeout" default:"0s"`
	// Retry retries failed upstream attempts.
	Retry *Retry `yaml:"retry,omitempty"`
	// PrefixRewrite replaces the matched prefix (prefix routes) or the
	// whole path (path routes) before forwarding.
	PrefixRewrite string `yaml:"prefixRewrite,omitempty"`
	// HostRewrite sets the Host header sent upstream.
	HostRewrite string `yaml:"hostRewrite,omitempty"`
	// HashPolicy picks what ring_hash and maglev clusters hash on.
	HashPolicy []HashPolicy `yaml:"hashPolicy,omitempty"`
	// RequestHeaders edits the request sent upstream.
	RequestHeaders HeaderEdits `yaml:"requestHeaders"`
	// ResponseHeaders edits the response sent to the client.
	ResponseHeaders HeaderEdits `yaml:"responseHeaders"`
}

// WeightedCluster is one cluster of a weighted split.
type WeightedCluster struct {
	// Name is the name of a cluster.
	Name string `yaml:"name"`
	// Weight is the cluster's share of the split, relative to the others.
	Weight uint32 `yaml:"weight"`
}

// Redirect answers with a redirect. Unset parts keep the request's.
type Redirect struct {
	// Scheme is http or https.
	Scheme string `yaml:"scheme,omitempty"`
	// Host is the host name redirected to.
	Host string `yaml:"host,omitempty"`
	// Port is the port redirected to.
	Port uint32 `yaml:"port,omitempty"`
	// Path replaces the whole path; PrefixRewrite only the matched prefix.
	Path string `yaml:"path,omitempty"`
	// PrefixRewrite replaces the matched prefix of the path.
	PrefixRewrite string `yaml:"prefixRewrite,omitempty"`
	// Code is 301, 302, 303, 307 or 308.
	Code uint32 `yaml:"code" default:"301"`
	// StripQuery drops the query string.
	StripQuery bool `yaml:"stripQuery" default:"false"`
}

// DirectResponse answers without an upstream.
type DirectResponse struct {
	// Status is the HTTP status (200-599).
	Status uint32 `yaml:"status"`
	// Body is sent as is (at most 4KiB, Envoy's limit).
	Body string `yaml:"body,omitempty"`
}

// Retry is a route's retry policy.
type Retry struct {
	// On lists the retry conditions, comma-separated: Envoy's
	// x-envoy-retry-on and x-envoy-retry-grpc-on values.
	On string `yaml:"on" default:"5xx,reset,connect-failure,refused-stream"`
	// NumRetries is the most retries of one request.
	NumRetries uint32 `yaml:"numRetries" default:"1"`
	// PerTryTimeout bounds each attempt; 0 means the route timeout.
	PerTryTimeout Duration `yaml:"perTryTimeout" default:"0s"`
	// RetriableStatusCodes are retried with on: retriable-status-codes.
	RetriableStatusCodes []uint32 `yaml:"retriableStatusCodes,omitempty"`
	// Backoff spaces the retries.
	Backoff Backoff `yaml:"backoff"`
}

// Backoff is exponential retry back-off with jitter.
type Backoff struct {
	// BaseInterval is the first back-off interval (at least 1ms).
	BaseInterval Duration `yaml:"baseInterval" default:"25ms"`
	// MaxInterval bounds the back-off interval.
	MaxInterval Duration `yaml:"maxInterval" default:"250ms"`
}

// HashPolicy is one input of a consistent hash. Exactly one is set.
type HashPolicy struct {
	// Header hashes on the value of this request header.
	Header string `yaml:"header,omitempty"`
	// Cookie hashes on the value of this cookie.
	Cookie string `yaml:"cookie,omitempty"`
	// SourceIP hashes on the client address.
	SourceIP bool `yaml:"sourceIp,omitempty"`
	// Terminal stops at this input when it yields a hash.
	Terminal bool `yaml:"terminal,omitempty"`
}

// HeaderEdits change headers. Set overwrites, Add appends, Remove deletes.
// Values are Envoy header format strings: %VARIABLE% is substituted and a
// literal percent sign is written %%.
type HeaderEdits struct {
	// Set headers, overwriting values already present.
	Set []HeaderValue `yaml:"set,omitempty"`
	// Add headers, appending to values already present.
	Add []HeaderValue `yaml:"add,omitempty"`
	// Remove lists header names to delete.
	Remove []string `yaml:"remove,omitempty"`
}

// HeaderValue is one header to set or add.
type HeaderValue struct {
	// Name is the header name.
	Name string `yaml:"name"`
	// Value is an Envoy header format string.
	Value string `yaml:"value"`
}
