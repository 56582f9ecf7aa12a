// Package component is the contract between `gatehouse serve` and the four
// components (authz, extproc, ratelimit, xds): what each is given and what
// each must do to be served, reloaded, probed and drained.
package component

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/kv"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// Deps are the shared services a component is built with. Nothing is
// global: two gatehouse instances can run in one test process.
type Deps struct {
	// Logger is already scoped to the component ("component" attribute).
	Logger *slog.Logger
	// Metrics registers the component's collectors. Metric names follow
	// gatehouse_<component>_<name>_{total,seconds}.
	Metrics prometheus.Registerer
	// Redis is the shared client, or nil when no Redis is configured and
	// the component must use its in-process store.
	Redis redis.UniversalClient
	// KeyPrefix namespaces the component's Redis keys (config redis.keyPrefix).
	KeyPrefix string
	// RedisReady answers, at once, whether the shared Redis answered its
	// last background ping (nil when Redis is not configured): readiness
	// checks use it rather than a round trip of their own, which a stalled
	// Redis would hold until the check's deadline.
	RedisReady func() error
	// KV is the simple key/value store (Redis-backed when Redis is set).
	KV kv.Store
	// Audit records decisions, config changes and NACKs.
	Audit audit.Recorder
	// Tracing joins the component's spans to the trace of the request
	// Envoy is processing; it is a no-op when tracing is off.
	Tracing *telemetry.Tracing
}

// Component is one of gatehouse's servers.
//
// Life cycle: the app builds it with the first valid config, calls
// Register on a fresh gRPC server, serves, and on every reload calls
// Prepare on all components before committing any of them, so that a
// config one component rejects changes nothing anywhere.
type Component interface {
	// Name is the component's config section name (authz, extproc, ...).
	Name() string
	// Register adds the component's gRPC services to s (the app's
	// registrar, which bounds and counts every RPC before the component's
	// handler sees it).
	Register(s grpc.ServiceRegistrar)
	// Prepare compiles cfg into the component's runtime form without
	// touching what is being served, and returns the function that swaps
	// it in. A returned error is config.Errors where it concerns config
	// fields, so that the app can report file:line.
	Prepare(cfg *config.Config) (commit func(), err error)
	// Ready reports whether the component can serve correctly now: its
	// stores and key sets are reachable. A problem to report without
	// making the component unready is an *admin.Warning. It must return
	// quickly (bounded by ctx).
	Ready(ctx context.Context) error
	// Close stops background work; the gRPC server is already stopped.
	Close(ctx context.Context) error
}

// Drainer is implemented by components whose RPCs are long-lived streams
// that never end on their own (xds' ADS streams). When gatehouse drains,
// the gRPC server stops taking new RPCs and then Drain is called, so that
// those streams end now and their clients reconnect elsewhere, instead of
// holding the drain until server.shutdownTimeout and being cut.
type Drainer interface {
	Drain()
}

// AdminRoutes is implemented by components that add admin HTTP endpoints
// (for example xds' /xds/nodes). Patterns use net/http.ServeMux syntax.
type AdminRoutes interface {
	AdminRoutes() map[string]http.Handler
}

// KeyRefresher is implemented by components that hold keys fetched from
// elsewhere (authz's JWKS). On SIGHUP the app asks them to fetch those
// keys again now instead of at their next refresh, so that an operator
// can make a revoked key stop verifying. KickKeys must not block.
type KeyRefresher interface {
	KickKeys()
}
