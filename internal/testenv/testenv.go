// Package testenv gives tests the real services they need: the private
// redis-server and Redis Cluster that `make test` starts (found through
// environment variables), or a redis-server of the test's own that it may
// kill and restart.
//
// Under `make test` (GATEHOUSE_TEST_REQUIRE=1) a test that needs Redis and
// finds none FAILS; run bare with `go test`, it is skipped with a message
// saying how to provide it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables set by scripts/test.sh.
const (
	EnvRedis        = "GATEHOUSE_TEST_REDIS"         // host:port of a redis-server
	EnvRedisCluster = "GATEHOUSE_TEST_REDIS_CLUSTER" // comma-separated masters of a Redis Cluster
	EnvRequire      = "GATEHOUSE_TEST_REQUIRE"       // "1": missing services fail tests
)

// Required reports whether missing services must fail tests.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// missing fails or skips t because a service is not available.
func missing(t testing.TB, what string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required under make test but is not available", what)
	}
	t.Skipf("%s not available; run `make test`, which starts it (or set the variable yourself)", what)
}

// RedisAddr returns the address of the shared test redis-server.
func RedisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(EnvRedis)
	if addr == "" {
		missing(t, "redis-server ("+EnvRedis+")")
	}
	return addr
}

// RedisClusterAddrs returns the masters of the shared test Redis Cluster.
func RedisClusterAddrs(t testing.TB) []string {
	t.Helper()
	v := os.Getenv(EnvRedisCluster)
	if v == "" {
		missing(t, "Redis Cluster ("+EnvRedisCluster+")")
	}
	return strings.Split(v, ",")
}

// Redis returns a client of the shared test redis-server, closed at the end
// of the test. Tests share the server: use KeyPrefix for your keys.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: RedisAddr(t), DialTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at %s does not answer: %v", RedisAddr(t), err)
	}
	return c
}

// RedisCluster returns a client of the shared test Redis Cluster.
func RedisCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: RedisClusterAddrs(t), DialTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.Ping(ctx).Err() }); err != nil {
		t.Fatalf("redis cluster does not answer: %v", err)
	}
	return c
}

// KeyPrefix returns a prefix unique to this test run, so tests sharing one
// Redis never see each other's keys.
func KeyPrefix(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return "test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}
