// Package compat starts gatehouse's rate limiter from exactly the
// environment of an envoyproxy/ratelimit Deployment: its environment
// variables (REDIS_URL, RUNTIME_ROOT, GRPC_PORT, …) become a gatehouse
// config with ratelimit.reference, which answers as the reference does, and
// the addresses of the reference's HTTP, debug and Prometheus listeners.
//
// Every variable the reference reads is either honoured, ignored because it
// only tunes the reference's own internals (said in Env.Notes), or refused
// with the reason when honouring it is not possible (a second Redis for
// per-second limits, memcache, xDS-served config, gRPC server TLS): a
// Deployment never starts with a setting silently dropped.
package compat

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Env is what an envoyproxy/ratelimit environment asks for.
type Env struct {
	// Config is the gatehouse config (YAML) serving it.
	Config []byte
	// LookupEnv resolves the config's env: secret references: the process
	// environment, plus the password part of REDIS_AUTH=user:password.
	LookupEnv func(string) (string, bool)
	// HTTPAddr serves /healthcheck and /json (HOST:PORT).
	HTTPAddr string
	// PrometheusAddr and PrometheusPath serve the metrics when
	// USE_PROMETHEUS is true ("" otherwise; they are on the debug port).
	PrometheusAddr, PrometheusPath string
	// HealthRedis makes /healthcheck fail while Redis does not answer
	// (REDIS_HEALTH_CHECK_ACTIVE_CONNECTION).
	HealthRedis bool
	// HealthNeedsConfig makes /healthcheck fail while no domain is loaded
	// (HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED).
	HealthNeedsConfig bool
	// Notes are variables set to values gatehouse does not need (they tune
	// the reference's own internals), for one log line each at start.
	Notes []string
}

// redisPasswordVar is the env: reference the config gives the password of
// REDIS_AUTH=user:password (a secret reference names a whole variable).
const redisPasswordVar = "GATEHOUSE_COMPAT_REDIS_PASSWORD"

// reader reads variables as the reference's envconfig does, collecting
// every problem.
type reader struct {
	lookup func(string) (string, bool)
	errs   []error
	notes  []string
}

func (r *reader) str(name, def string) string {
	if v, ok := r.lookup(name); ok {
		return v
	}
	return def
}

func (r *reader) bool(name string, def bool) bool {
	v, ok := r.lookup(name)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a boolean (true or false)", name, v))
		return def
	}
	return b
}

func (r *reader) int(name string, def int) int {
	v, ok := r.lookup(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

func (r *reader) float(name string, def float64) float64 {
	v, ok := r.lookup(name)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 32)
	if err != nil || math.IsNaN(f) {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a number", name, v))
		return def
	}
	return f
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v, ok := r.lookup(name)
	if !ok || v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q is not a duration (such as 10s)", name, v))
		return def
	}
	return d
}

// refuse records that a variable asks for what gatehouse does not do.
func (r *reader) refuse(name, value, why string) {
	r.errs = append(r.errs, fmt.Errorf("%s=%s is not supported: %s", name, value, why))
}

// note records a variable that tunes the reference's internals only.
func (r *reader) note(name, why string) {
	if v, ok := r.lookup(name); ok && v != "" {
		r.notes = append(r.notes, fmt.Sprintf("%s=%s has no effect: %s", name, v, why))
	}
}

// FromEnv reads an envoyproxy/ratelimit environment (the reference's
// defaults for what is unset). An error lists every variable gatehouse
// cannot honour.
func FromEnv(lookup func(string) (string, bool)) (*Env, error) {
	r := &reader{lookup: lookup}
	env := &Env{}
	cfg := map[string]any{"apiVersion": "gatehouse/v1"}

	// Process: listeners, logs, tracing.
	grpcAddr := net.JoinHostPort(r.str("GRPC_HOST", "0.0.0.0"), strconv.Itoa(r.int("GRPC_PORT", 8081)))
	env.HTTPAddr = net.JoinHostPort(r.str("HOST", "0.0.0.0"), strconv.Itoa(r.int("PORT", 8080)))
	debugAddr := net.JoinHostPort(r.str("DEBUG_HOST", "0.0.0.0"), strconv.Itoa(r.int("DEBUG_PORT", 6070)))
	if v := r.str("GRPC_UDS", ""); v != "" {
		r.refuse("GRPC_UDS", v, "gatehouse serves gRPC on TCP; set GRPC_HOST and GRPC_PORT")
	}
	if r.bool("GRPC_SERVER_USE_TLS", false) {
		r.refuse("GRPC_SERVER_USE_TLS", "true", "gRPC server TLS is not available in ratelimit-compat yet; terminate TLS in front of it")
	}
	level, format := logLevel(r), strings.ToLower(r.str("LOG_FORMAT", "text"))
	if format != "json" {
		format = "text"
	}
	server := map[string]any{
		"log": map[string]any{"level": level, "format": format},
		// The reference serves its debug port, /rlconfig included, to
		// anyone who reaches it; so does this drop-in (DEBUG_HOST=127.0.0.1
		// keeps it on loopback).
		"admin": map[string]any{"address": debugAddr, "insecureSensitive": true},
		"grpc": map[string]any{"keepalive": map[string]any{
			"maxConnectionAge":      r.duration("GRPC_MAX_CONNECTION_AGE", 24*time.Hour).String(),
			"maxConnectionAgeGrace": r.duration("GRPC_MAX_CONNECTION_AGE_GRACE", time.Hour).String(),
		}},
	}
	if tr := tracing(r); tr != nil {
		server["tracing"] = tr
	}
	cfg["server"] = server

	// Redis.
	redisCfg, lookupEnv := redisConfig(r)
	cfg["redis"] = redisCfg
	env.LookupEnv = lookupEnv
	env.HealthRedis = r.bool("REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", false)

	// Metrics.
	if r.bool("USE_PROMETHEUS", false) {
		env.PrometheusAddr = r.str("PROMETHEUS_ADDR", ":9090")
		env.PrometheusPath = r.str("PROMETHEUS_PATH", "/metrics")
		r.note("PROMETHEUS_MAPPER_YAML", "the reference's counters are exposed under its default mapping's names")
	} else if !r.bool("DISABLE_STATS", false) && (r.bool("USE_STATSD", true) || r.bool("USE_DOG_STATSD", false)) {
		r.notes = append(r.notes, "statsd is not pushed to: the reference's counters are on "+debugAddr+"/metrics under its Prometheus names (or set USE_PROMETHEUS=true)")
	}
	for _, n := range []string{"STATS_FLUSH_INTERVAL", "EXTRA_TAGS", "USE_DOG_STATSD_MOGRIFIERS"} {
		r.note(n, "statsd settings")
	}

	// The rate limiter.
	env.HealthNeedsConfig = r.bool("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", false)
	cfg["ratelimit"] = rateLimitConfig(r, grpcAddr)

	if len(r.errs) > 0 {
		return nil, fmt.Errorf("ratelimit-compat: the environment asks for what gatehouse cannot do:\n%w", errors.Join(r.errs...))
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("ratelimit-compat: %w", err)
	}
	env.Config, env.Notes = b, r.notes
	return env, nil
}

// logLevel maps a logrus level (LOG_LEVEL, default WARN) to gatehouse's.
func logLevel(r *reader) string {
	v := r.str("LOG_LEVEL", "WARN")
	switch strings.ToLower(v) {
	case "trace", "debug":
		return "debug"
	case "info":
		return "info"
	case "warn", "warning":
		return "warn"
	case "error", "fatal", "panic":
		return "error"
	}
	r.errs = append(r.errs, fmt.Errorf("LOG_LEVEL=%q is not a level (trace, debug, info, warn, error, fatal, panic)", v))
	return "warn"
}

func tracing(r *reader) map[string]any {
	if !r.bool("TRACING_ENABLED", false) {
		return nil
	}
	if p := strings.ToLower(r.str("TRACING_EXPORTER_PROTOCOL", "http")); p != "grpc" {
		r.refuse("TRACING_EXPORTER_PROTOCOL", p, "gatehouse exports spans over OTLP/gRPC; set it to grpc")
		return nil
	}
	ep := r.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", r.str("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"))
	insecure := r.bool("OTEL_EXPORTER_OTLP_INSECURE", false)
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		insecure = insecure || u.Scheme == "http"
		ep = u.Host
	}
	return map[string]any{
		"otlpEndpoint": ep,
		"insecure":     insecure,
		"sampleRatio":  r.float("TRACING_SAMPLING_RATE", 1),
		"serviceName":  r.str("TRACING_SERVICE_NAME", "RateLimit"),
	}
}

// redisConfig reads the REDIS_* variables.
func redisConfig(r *reader) (map[string]any, func(string) (string, bool)) {
	out := map[string]any{"keyPrefix": r.str("CACHE_KEY_PREFIX", "")}
	if bt := strings.ToLower(r.str("BACKEND_TYPE", "redis")); bt != "redis" && bt != "" {
		r.refuse("BACKEND_TYPE", bt, "gatehouse counts in Redis (single, sentinel or cluster)")
	}
	if r.bool("REDIS_PERSECOND", false) {
		r.refuse("REDIS_PERSECOND", "true", "gatehouse keeps every limit in one Redis; point REDIS_URL at it (per-second limits then count there)")
	}
	if v := strings.ToUpper(r.str("REDIS_POOL_ON_EMPTY_BEHAVIOR", "WAIT")); v != "WAIT" {
		// The reference itself refuses to start with these.
		r.refuse("REDIS_POOL_ON_EMPTY_BEHAVIOR", v, "the reference refuses it too; remove it or set WAIT")
	}
	url := r.str("REDIS_URL", "/var/run/nutcracker/ratelimit.sock")
	var addrs []string
	for _, a := range strings.Split(url, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	switch typ := strings.ToLower(r.str("REDIS_TYPE", "SINGLE")); typ {
	case "single":
		out["mode"] = "single"
	case "cluster":
		out["mode"] = "cluster"
	case "sentinel":
		// The reference's format: <master name>,<sentinel>,…
		if len(addrs) < 2 {
			r.errs = append(r.errs, fmt.Errorf("REDIS_URL=%q: sentinel needs <master name>,<sentinel host:port>,…", url))
		} else {
			out["mode"], out["masterName"], addrs = "sentinel", addrs[0], addrs[1:]
		}
	default:
		r.errs = append(r.errs, fmt.Errorf("REDIS_TYPE=%q is not single, cluster or sentinel", typ))
	}
	out["addresses"] = addrs
	// The socket type applies to a single server only: the reference
	// dials cluster and sentinel nodes over TCP whatever it says.
	switch st := strings.ToLower(r.str("REDIS_SOCKET_TYPE", "unix")); {
	case st != "tcp" && st != "unix":
		r.errs = append(r.errs, fmt.Errorf("REDIS_SOCKET_TYPE=%q is not tcp or unix", st))
	case st == "unix" && out["mode"] == "single":
		out["network"] = "unix"
	}
	if n := r.int("REDIS_POOL_SIZE", 10); n > 0 {
		out["poolSize"] = n
	}
	t := r.duration("REDIS_TIMEOUT", 10*time.Second).String()
	out["dialTimeout"], out["readTimeout"], out["writeTimeout"] = t, t, t
	if r.bool("REDIS_TLS", false) {
		tls := map[string]any{}
		for name, field := range map[string]string{"REDIS_TLS_CACERT": "caFile", "REDIS_TLS_CLIENT_CERT": "certFile", "REDIS_TLS_CLIENT_KEY": "keyFile"} {
			if v := r.str(name, ""); v != "" {
				tls[field] = v
			}
		}
		if r.bool("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", false) {
			r.refuse("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "true", "gatehouse verifies Redis' certificate and name; set the name it carries in a gatehouse config (redis.tls.serverName)")
		}
		out["tls"] = tls
	}
	lookup := r.lookup
	if auth := r.str("REDIS_AUTH", ""); auth != "" {
		// The reference's form is password or user:password.
		if user, pass, found := strings.Cut(auth, ":"); found {
			out["username"], out["password"] = user, "env:"+redisPasswordVar
			lookup = func(name string) (string, bool) {
				if name == redisPasswordVar {
					return pass, true
				}
				return r.lookup(name)
			}
		} else {
			out["password"] = "env:REDIS_AUTH"
		}
	}
	if r.str("REDIS_SENTINEL_AUTH", "") != "" {
		out["sentinelPassword"] = "env:REDIS_SENTINEL_AUTH"
	}
	for _, n := range []string{"REDIS_PIPELINE_WINDOW", "REDIS_PIPELINE_LIMIT"} {
		r.note(n, "gatehouse batches concurrent requests into one round trip on its own (ratelimit.store)")
	}
	r.note("EXPIRATION_JITTER_MAX_SECONDS", "gatehouse's counters expire at their window's end")
	return out, lookup
}

// rateLimitConfig reads the runtime directory and the answering settings.
func rateLimitConfig(r *reader, grpcAddr string) map[string]any {
	if ct := strings.ToUpper(r.str("CONFIG_TYPE", "FILE")); ct != "FILE" {
		r.refuse("CONFIG_TYPE", ct, "gatehouse reads the rate limit config from the runtime directory (FILE)")
	}
	if r.bool("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", false) {
		r.refuse("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "true", "gatehouse counts refused hits as the reference does by default")
	}
	root, sub := r.str("RUNTIME_ROOT", "/srv/runtime_data/current"), r.str("RUNTIME_SUBDIRECTORY", "")
	watchRoot := r.bool("RUNTIME_WATCH_ROOT", true)
	if watchRoot && sub == "" {
		// The reference then loads no config at all and limits nothing.
		r.errs = append(r.errs, errors.New("RUNTIME_SUBDIRECTORY is empty: with RUNTIME_WATCH_ROOT=true the reference loads no config at all from it; set it (config files are read from $RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/$RUNTIME_APPDIRECTORY)"))
	}
	cacheEntries := 0
	if b := r.int("LOCAL_CACHE_SIZE_IN_BYTES", 0); b > 0 {
		// freecache holds a key, its header and a value; gatehouse's
		// entries are of the same order: about 128 bytes each.
		cacheEntries = max(1, b/128)
	}
	r.note("FORCE_START_WITHOUT_INITIAL_CONFIG", "gatehouse starts with the config of the runtime directory")
	return map[string]any{
		"address":         grpcAddr,
		"responseHeaders": "none",
		"mergeDomains":    r.bool("MERGE_DOMAIN_CONFIG", false),
		"localCache":      map[string]any{"maxEntries": cacheEntries},
		"store":           map[string]any{"timeout": r.duration("REDIS_TIMEOUT", 10*time.Second).String()},
		"reference": map[string]any{
			"runtime": map[string]any{
				"root":           root,
				"subdirectory":   sub,
				"appDirectory":   r.str("RUNTIME_APPDIRECTORY", "config"),
				"ignoreDotFiles": r.bool("RUNTIME_IGNOREDOTFILES", false),
				"watchRoot":      watchRoot,
			},
			"responseHeaders": map[string]any{
				"enabled":   r.bool("LIMIT_RESPONSE_HEADERS_ENABLED", false),
				"limit":     r.str("LIMIT_LIMIT_HEADER", "RateLimit-Limit"),
				"remaining": r.str("LIMIT_REMAINING_HEADER", "RateLimit-Remaining"),
				"reset":     r.str("LIMIT_RESET_HEADER", "RateLimit-Reset"),
			},
			"dynamicMetadata": r.bool("RESPONSE_DYNAMIC_METADATA", false),
			"shadowMode":      r.bool("SHADOW_MODE", false),
			"quotaMode":       r.bool("QUOTA_MODE", false),
			"nearLimitRatio":  r.float("NEAR_LIMIT_RATIO", 0.8),
		},
	}
}
