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
	// TLS, when set, serves every gRPC server and the admin server's
	// sensitive pages over TLS and admits only callers with a client
	// certificate the trust roots verify and the allow lists name.
	TLS *ServerTLS `yaml:"tls,omitempty"`
	// DrainDelay is the first phase of a SIGTERM: readiness and gRPC
	// health turn NOT_SERVING while every listener keeps accepting and
	// serving, so that Kubernetes, DNS and Envoy's health checks move
	// traffic away before a connection is refused. Then the drain runs.
	DrainDelay Duration `yaml:"drainDelay" default:"5s"`
	// ShutdownTimeout bounds the drain on SIGTERM: in-flight RPCs get this
	// long to finish before their connections are closed.
	ShutdownTimeout Duration `yaml:"shutdownTimeout" default:"15s"`
	// CloseTimeout bounds what runs after the drain (flushing the audit
	// log, closing Redis and the tracing exporter): the process exits when
	// it is up, finished or not.
	CloseTimeout Duration `yaml:"closeTimeout" default:"5s"`
	// MemoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT).
	// 0 derives it from the container's cgroup memory limit (90% of it),
	// and leaves none when there is no such limit; the GOMEMLIMIT
	// environment variable, when set, wins over both.
	MemoryLimit ByteSize `yaml:"memoryLimit" default:"0"`
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

// Admin is the HTTP server for /healthz, /readyz, /metrics and the
// sensitive pages: /config, /xds/*, /rlconfig and POST
// /authz/jwks/refresh (they show the whole mesh config, or make gatehouse
// call identity providers).
type Admin struct {
	// Address is host:port; loopback by default so that the effective
	// config is not exposed beyond the host.
	Address string `yaml:"address" default:"127.0.0.1:9190"`
	// SensitiveAddress, when set, is a listener of its own for the
	// sensitive pages, which Address then no longer serves: probes and
	// Prometheus reach Address, people and tools reach this one. With
	// server.tls it serves HTTPS to the callers of
	// server.tls.servers.admin only; without, it must be loopback.
	SensitiveAddress string `yaml:"sensitiveAddress,omitempty"`
	// InsecureSensitive knowingly serves the sensitive pages in plaintext,
	// to anyone, on an address beyond loopback: only for a network
	// restricted otherwise (a NetworkPolicy), as envoyproxy/ratelimit's
	// debug port is.
	InsecureSensitive bool `yaml:"insecureSensitive" default:"false"`
}

// GRPC holds the settings shared by every gRPC server of the process.
// Envoy keeps long-lived HTTP/2 connections to gatehouse and multiplexes
// many requests over each, so limits are set per stream and per connection
// deliberately rather than left to grpc-go's defaults.
type GRPC struct {
	// MaxRecvMessageSize is the most any server accepts in one request
	// message. Each server's own limit is what a valid request to it can
	// be, derived from the config (an RLS request is small; ext_authz and
	// ext_proc carry bodies up to the configured body limits), and never
	// more than this; the ADS server takes this whole size.
	MaxRecvMessageSize ByteSize `yaml:"maxRecvMessageSize" default:"4MiB"`
	// RecvLimits is derived (each server gets what a valid request to it
	// can be, see docs/operations.md) or max (every server gets
	// MaxRecvMessageSize: for a hand-written Envoy config that sends
	// ext_authz bodies no webhook verifies).
	RecvLimits RecvLimits `yaml:"recvLimits" default:"derived"`
	// MaxSendMessageSize bounds one response message.
	MaxSendMessageSize ByteSize `yaml:"maxSendMessageSize" default:"4MiB"`
	// MaxConcurrentStreams bounds streams per connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS). Envoy opens more connections when
	// it needs more.
	MaxConcurrentStreams uint32 `yaml:"maxConcurrentStreams" default:"256"`
	// MaxInflightBytes bounds, per server, the request bytes being
	// received and handled at once: a unary request reserves its server's
	// receive limit before it is read and keeps its decoded size until it
	// is answered; a stream's message keeps its decoded size until the
	// next one. Requests wait for room until their deadline (those without
	// a deadline are refused at once), answered RESOURCE_EXHAUSTED.
	MaxInflightBytes ByteSize `yaml:"maxInflightBytes" default:"64MiB"`
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
