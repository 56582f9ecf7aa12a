package compat

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

func lookupOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// load builds the config of env and loads it as serve would.
func load(t *testing.T, env map[string]string) (*Env, *config.Config) {
	t.Helper()
	e, err := FromEnv(lookupOf(env))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	cfg, err := config.LoadBytes("<env>", e.Config, config.LoadOptions{LookupEnv: e.LookupEnv})
	if err != nil {
		t.Fatalf("config of the environment: %v\n%s", err, e.Config)
	}
	return e, cfg
}

// TestKubernetesDeployment: the environment of the reference's usual
// Kubernetes Deployment becomes an equivalent gatehouse config.
func TestKubernetesDeployment(t *testing.T) {
	e, cfg := load(t, map[string]string{
		"REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "redis:6379", "REDIS_AUTH": "app:s3cret", "REDIS_TLS": "true",
		"REDIS_POOL_SIZE": "20", "RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit",
		"RUNTIME_WATCH_ROOT": "false", "RUNTIME_IGNOREDOTFILES": "true", "GRPC_PORT": "9081", "PORT": "9080",
		"LOCAL_CACHE_SIZE_IN_BYTES": "1048576", "NEAR_LIMIT_RATIO": "0.9", "LIMIT_RESPONSE_HEADERS_ENABLED": "true",
		"LOG_LEVEL": "debug", "LOG_FORMAT": "json", "USE_STATSD": "false", "CACHE_KEY_PREFIX": "rl_",
		"MERGE_DOMAIN_CONFIG": "true", "SHADOW_MODE": "true",
	})
	r, rl := cfg.Redis, cfg.RateLimit
	if r.Mode != config.RedisSingle || r.Network != config.RedisTCP || r.Addresses[0] != "redis:6379" || r.PoolSize != 20 || r.TLS == nil || r.KeyPrefix != "rl_" {
		t.Errorf("redis = %+v", r)
	}
	if r.Username != "app" || string(r.Password.Value()) != "s3cret" {
		t.Errorf("REDIS_AUTH user:password: username %q, password %q", r.Username, r.Password.Value())
	}
	if strings.Contains(string(e.Config), "s3cret") {
		t.Errorf("the config holds the Redis password; it must be a reference:\n%s", e.Config)
	}
	ref := rl.Reference
	if rl.Address != "0.0.0.0:9081" || e.HTTPAddr != "0.0.0.0:9080" || cfg.Server.Admin.Address != "0.0.0.0:6070" {
		t.Errorf("addresses: grpc %s, http %s, debug %s", rl.Address, e.HTTPAddr, cfg.Server.Admin.Address)
	}
	if ref == nil || ref.Runtime.Dir() != "/data/ratelimit/config" || !ref.Runtime.IgnoreDotFiles || ref.Runtime.WatchRoot {
		t.Fatalf("runtime = %+v", ref)
	}
	if !ref.ResponseHeaders.Enabled || ref.ResponseHeaders.Limit != "RateLimit-Limit" || !ref.ShadowMode || float32(ref.NearLimitRatio) != 0.9 {
		t.Errorf("reference = %+v", ref)
	}
	if rl.LocalCache.MaxEntries != 8192 || !rl.MergeDomains || cfg.Server.Log.Level != config.LogDebug || cfg.Server.Log.Format != config.LogJSON {
		t.Errorf("cache %d, merge %v, log %+v", rl.LocalCache.MaxEntries, rl.MergeDomains, cfg.Server.Log)
	}
}

// TestReferenceDefaults: an empty environment is the reference's
// defaults: a Unix socket to a local twemproxy, the runtime directory
// /srv/runtime_data/current, ports 8081, 8080 and 6070.
func TestReferenceDefaults(t *testing.T) {
	e, cfg := load(t, map[string]string{"RUNTIME_SUBDIRECTORY": "ratelimit"})
	if cfg.Redis.Network != config.RedisUnix || cfg.Redis.Addresses[0] != "/var/run/nutcracker/ratelimit.sock" || cfg.Redis.KeyPrefix != "" {
		t.Errorf("redis = %+v", cfg.Redis)
	}
	if cfg.RateLimit.Reference.Runtime.Dir() != "/srv/runtime_data/current/ratelimit/config" || !cfg.RateLimit.Reference.Runtime.WatchRoot {
		t.Errorf("runtime = %+v", cfg.RateLimit.Reference.Runtime)
	}
	if cfg.RateLimit.Address != "0.0.0.0:8081" || e.HTTPAddr != "0.0.0.0:8080" || cfg.Server.Log.Level != config.LogWarn {
		t.Errorf("grpc %s, http %s, log %s", cfg.RateLimit.Address, e.HTTPAddr, cfg.Server.Log.Level)
	}
	if cfg.RateLimit.LocalCache.MaxEntries != 0 || cfg.RateLimit.Reference.ResponseHeaders.Enabled {
		t.Errorf("the reference's defaults have no local cache and no headers")
	}
	if len(e.Notes) == 0 || !strings.Contains(strings.Join(e.Notes, "\n"), "statsd") {
		t.Errorf("notes = %v; want one about statsd (USE_STATSD defaults to true)", e.Notes)
	}
}

func TestClusterAndSentinel(t *testing.T) {
	_, cfg := load(t, map[string]string{"RUNTIME_SUBDIRECTORY": "r", "REDIS_TYPE": "cluster", "REDIS_URL": "a:1,b:2,c:3"})
	if cfg.Redis.Mode != config.RedisCluster || len(cfg.Redis.Addresses) != 3 || cfg.Redis.Network != config.RedisTCP {
		t.Errorf("cluster = %+v", cfg.Redis)
	}
	_, cfg = load(t, map[string]string{"RUNTIME_SUBDIRECTORY": "r", "REDIS_TYPE": "sentinel", "REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_AUTH": "pw", "REDIS_SENTINEL_AUTH": "spw"})
	if cfg.Redis.Mode != config.RedisSentinel || cfg.Redis.MasterName != "mymaster" || len(cfg.Redis.Addresses) != 2 || string(cfg.Redis.Password.Value()) != "pw" || string(cfg.Redis.SentinelPassword.Value()) != "spw" {
		t.Errorf("sentinel = %+v", cfg.Redis)
	}
}

// TestRefusals: what gatehouse cannot honour stops the start, every
// variable named at once.
func TestRefusals(t *testing.T) {
	_, err := FromEnv(lookupOf(map[string]string{
		"RUNTIME_SUBDIRECTORY": "r", "BACKEND_TYPE": "memcache", "REDIS_PERSECOND": "true", "CONFIG_TYPE": "GRPC_XDS_SOTW",
		"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true", "GRPC_SERVER_USE_TLS": "true", "GRPC_UDS": "/tmp/s",
		"REDIS_TYPE": "twemproxy", "PORT": "eighty", "LOG_LEVEL": "loud", "REDIS_POOL_ON_EMPTY_BEHAVIOR": "ERROR",
	}))
	if err == nil {
		t.Fatal("FromEnv accepted settings gatehouse cannot honour")
	}
	for _, name := range []string{"BACKEND_TYPE", "REDIS_PERSECOND", "CONFIG_TYPE", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "GRPC_SERVER_USE_TLS", "GRPC_UDS", "REDIS_TYPE", "PORT", "LOG_LEVEL", "REDIS_POOL_ON_EMPTY_BEHAVIOR"} {
		if !strings.Contains(err.Error(), name+"=") {
			t.Errorf("the error does not name %s:\n%v", name, err)
		}
	}
	if _, err := FromEnv(lookupOf(map[string]string{})); err == nil || !strings.Contains(err.Error(), "RUNTIME_SUBDIRECTORY") {
		t.Errorf("no RUNTIME_SUBDIRECTORY with RUNTIME_WATCH_ROOT: %v; want an error (the reference would load nothing)", err)
	}
}
