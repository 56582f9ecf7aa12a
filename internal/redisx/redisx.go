// Package redisx builds the shared Redis client from config: one go-redis
// UniversalClient for a single server, Sentinel or Redis Cluster, with
// timeouts that bound every call.
package redisx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/gatehouse/gatehouse/internal/config"
)

// New returns a client for cfg. It does not connect: go-redis dials lazily,
// so an unreachable Redis at start is reported by Ping (and /readyz), not
// by a crash loop.
func New(cfg *config.Redis) (redis.UniversalClient, error) {
	opts := &redis.UniversalOptions{
		Addrs:            cfg.Addresses,
		Username:         cfg.Username,
		Password:         string(cfg.Password.Value()),
		SentinelPassword: string(cfg.SentinelPassword.Value()),
		DB:               cfg.DB,
		DialTimeout:      cfg.DialTimeout.D(),
		ReadTimeout:      cfg.ReadTimeout.D(),
		WriteTimeout:     cfg.WriteTimeout.D(),
		PoolSize:         cfg.PoolSize,
		// Timeouts above are honoured through the context too, so that a
		// caller's deadline wins over a longer socket timeout.
		ContextTimeoutEnabled: true,
		// Exactness matters more than failover speed for counters: a read
		// from a replica could return a stale count.
		ReadOnly: false,
		// Maintenance notifications (Redis 8 / Redis Cloud) cost a failed
		// handshake round trip on every new connection to older servers,
		// and their first handshake writes options shared between a client
		// and its connections (a data race in go-redis v9.23). gatehouse
		// reconnects on its own; it does not need them.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// RESP2. gatehouse asks and reads answers; it uses none of RESP3's
		// push messages (client-side caching, Pub/Sub on one connection),
		// and with RESP3 go-redis looks for pending push notifications
		// around every reply: 5% of the rate limiter's CPU under load
		// (scripts/ratelimit/profile.sh). Every reply gatehouse reads is
		// the same in both.
		Protocol: 2,
	}
	if cfg.Mode == config.RedisSentinel {
		opts.MasterName = cfg.MasterName
	}
	if cfg.TLS != nil {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
	}
	switch cfg.Mode {
	case config.RedisCluster:
		return redis.NewClusterClient(opts.Cluster()), nil
	case config.RedisSentinel:
		return redis.NewFailoverClient(opts.Failover()), nil
	default:
		o := opts.Simple()
		o.Addr = cfg.Addresses[0]
		if cfg.Network == config.RedisUnix {
			o.Network = "unix"
		}
		return redis.NewClient(o), nil
	}
}

// Ping checks that Redis answers; for a cluster, every master must.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	}
	return c.Ping(ctx).Err()
}

func tlsConfig(t *config.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(string(t.CAFile))
		if err != nil {
			return nil, fmt.Errorf("redis: tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: tls.caFile %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(string(t.CertFile), string(t.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("redis: tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
