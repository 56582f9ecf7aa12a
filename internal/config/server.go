package config

// Server holds the process-wide settings.
type Server struct {
	// Log configures the structured log on standard error.
	Log Log `yaml:"log"`
	// Admin is the operations HTTP server.
	Admin Admin `yaml:"admin"`
	// GRPC holds the settings of every component's gRPC server.
	GRPC GRPC `yaml:"grpc"`
	// Tracing configures OpenTelemetry spans; off unless an endpoint is set.
	Tracing Tracing `yaml:"tracing"`
	// ShutdownTimeout bounds the drain on SIGTERM: in-flight RPCs get this
	// long to finish before their connections are closed.
	ShutdownTimeout Duration `yaml:"shutdownTimeout" default:"15s"`
	// ReloadDebounce coalesces the burst of file events an editor or a
	// Kubernetes ConfigMap update makes into one reload.
	ReloadDebounce Duration `yaml:"reloadDebounce" default:"250ms"`
}

// Log configures the structured log (log/slog).
type Log struct {
	// Level is the least severe level written; a reload changes it live.
	Level LogLevel `yaml:"level" default:"info"`
	// Format is json (for log pipelines) or text (for people).
	Format LogFormat `yaml:"format" default:"json"`
}

// Admin is the HTTP server for /healthz, /readyz, /metrics and /config.
type Admin struct {
	// Address is host:port; loopback by default so that the effective
	// config is not exposed beyond the host.
	Address string `yaml:"address" default:"127.0.0.1:9190"`
}

// GRPC holds the settings shared by every gRPC server of the process.
// Envoy keeps long-lived HTTP/2 connections to gatehouse and multiplexes
// many requests over each, so limits are set per stream and per connection
// deliberately rather than left to grpc-go's defaults.
type GRPC struct {
	// MaxRecvMessageSize bounds one request message. ext_authz with
	// with_request_body and ext_proc with buffered bodies carry whole
	// bodies, so it must exceed the largest body a route buffers.
	MaxRecvMessageSize ByteSize `yaml:"maxRecvMessageSize" default:"4MiB"`
	// MaxSendMessageSize bounds one response message.
	MaxSendMessageSize ByteSize `yaml:"maxSendMessageSize" default:"4MiB"`
	// MaxConcurrentStreams bounds streams per connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS). Envoy opens more connections when
	// it needs more.
	MaxConcurrentStreams uint32 `yaml:"maxConcurrentStreams" default:"4096"`
	// Keepalive controls HTTP/2 pings with Envoy and other clients.
	Keepalive Keepalive `yaml:"keepalive"`
}

// Keepalive controls HTTP/2 pings between gatehouse and its clients.
type Keepalive struct {
	// Time is how long a connection may be idle before the server pings.
	Time Duration `yaml:"time" default:"30s"`
	// Timeout is how long the server waits for a ping ack before closing.
	Timeout Duration `yaml:"timeout" default:"10s"`
	// MinClientPingInterval is the most often a client may ping; faster
	// clients are disconnected (GOAWAY too_many_pings).
	MinClientPingInterval Duration `yaml:"minClientPingInterval" default:"10s"`
	// PermitWithoutStream lets clients ping with no active stream, as
	// Envoy's and gRPC's keepalives do on idle connections.
	PermitWithoutStream bool `yaml:"permitWithoutStream" default:"true"`
	// MaxConnectionAge closes connections after this long (0 = never), so
	// that clients rebalance over replicas behind an L4 load balancer.
	MaxConnectionAge Duration `yaml:"maxConnectionAge" default:"0s"`
	// MaxConnectionAgeGrace lets RPCs finish after MaxConnectionAge.
	MaxConnectionAgeGrace Duration `yaml:"maxConnectionAgeGrace" default:"30s"`
}

// Tracing configures OpenTelemetry. With no endpoint, tracing is off and
// costs nothing on the request path.
type Tracing struct {
	// OTLPEndpoint is host:port of an OTLP/gRPC collector; empty = off.
	OTLPEndpoint string `yaml:"otlpEndpoint"`
	// Insecure sends spans without TLS (a collector on the same host).
	Insecure bool `yaml:"insecure" default:"false"`
	// SampleRatio samples new traces; a trace Envoy already sampled is
	// always followed (parent-based).
	SampleRatio float64 `yaml:"sampleRatio" default:"1"`
	// ServiceName is the service.name resource attribute.
	ServiceName string `yaml:"serviceName" default:"gatehouse"`
}

// Redis is the shared store of every replica: rate-limit counters, webhook
// replay guards, idempotency records.
type Redis struct {
	// Mode is single (one server), sentinel (a master set behind
	// sentinels) or cluster (Redis Cluster).
	Mode RedisMode `yaml:"mode" default:"single"`
	// Addresses are host:port of the server, the sentinels or the cluster
	// seed nodes; with network unix, the path of the server's socket.
	Addresses []string `yaml:"addresses"`
	// Network is tcp, or unix for a single server on a Unix socket (a
	// local twemproxy, envoyproxy/ratelimit's REDIS_SOCKET_TYPE=unix).
	Network RedisNetwork `yaml:"network" default:"tcp"`
	// MasterName is the Sentinel master set name (sentinel mode).
	MasterName string `yaml:"masterName"`
	// Username authenticates with Redis ACLs (Redis 6+).
	Username string `yaml:"username"`
	// Password authenticates with Redis.
	Password Secret `yaml:"password,omitempty"`
	// SentinelPassword authenticates to the sentinels (sentinel mode).
	SentinelPassword Secret `yaml:"sentinelPassword,omitempty"`
	// DB is the database number (single and sentinel modes).
	DB int `yaml:"db" default:"0"`
	// TLS encrypts connections to Redis when set.
	TLS *TLS `yaml:"tls,omitempty"`
	// KeyPrefix namespaces every key gatehouse writes.
	KeyPrefix string `yaml:"keyPrefix" default:"gh:"`
	// DialTimeout bounds connecting to a Redis node.
	DialTimeout Duration `yaml:"dialTimeout" default:"1s"`
	// ReadTimeout bounds waiting for a reply; components may use less.
	ReadTimeout Duration `yaml:"readTimeout" default:"250ms"`
	// WriteTimeout bounds sending a command.
	WriteTimeout Duration `yaml:"writeTimeout" default:"250ms"`
	// PoolSize is connections per node (0 = 10 per CPU, go-redis' default).
	PoolSize int `yaml:"poolSize" default:"0"`
}

// TLS is a client TLS configuration.
type TLS struct {
	// CAFile verifies the server; empty means the system roots.
	CAFile FilePath `yaml:"caFile"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile FilePath `yaml:"certFile"`
	// KeyFile is the client certificate's private key.
	KeyFile FilePath `yaml:"keyFile"`
	// ServerName overrides the name verified in the server certificate.
	ServerName string `yaml:"serverName"`
}
