package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/redisx"
	"github.com/gatehouse/gatehouse/ratelimit"
	"github.com/gatehouse/gatehouse/ratelimit/compat"
)

func newRateLimitCompatCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "ratelimit-compat",
		Short: "Serve envoyproxy/ratelimit's Deployment unchanged: its environment variables and runtime directory",
		Long: `ratelimit-compat starts the rate limiter from exactly the environment of an
envoyproxy/ratelimit container (REDIS_URL, REDIS_TYPE, RUNTIME_ROOT,
GRPC_PORT, PORT, LOG_LEVEL, …) and answers as the reference does: its
config files from $RUNTIME_ROOT/$RUNTIME_SUBDIRECTORY/$RUNTIME_APPDIRECTORY
(a Kubernetes ConfigMap mount and its ..data swap included), its Redis keys,
response headers and metrics. HTTP on HOST:PORT serves /healthcheck and
/json; the debug port (DEBUG_HOST:DEBUG_PORT) /rlconfig and gatehouse's
admin pages (/healthz, /readyz, /metrics, /config).

A variable gatehouse cannot honour stops the start with the reason; the
config it builds is printed by /config. docs/ratelimit.md lists what a
migrating team changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := compat.FromEnv(os.LookupEnv)
			if err != nil {
				return err
			}
			return runRateLimitCompat(cmd.Context(), env, stdout, stderr)
		},
	}
}

// runRateLimitCompat serves env until ctx is done: the runtime (the RLS
// gRPC server and the admin server on the debug port) and the reference's
// HTTP listeners.
func runRateLimitCompat(ctx context.Context, env *compat.Env, stdout, stderr io.Writer) error {
	// The reference's HTTP listeners first: a port taken fails the start
	// before anything else runs.
	addrs := []string{env.HTTPAddr}
	if env.PrometheusAddr != "" {
		addrs = append(addrs, env.PrometheusAddr)
	}
	var lis []net.Listener
	closeAll := func() {
		for _, l := range lis {
			_ = l.Close()
		}
	}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("ratelimit-compat: cannot listen on %s: %w", addr, err)
		}
		lis = append(lis, l)
	}
	rt, err := Start(ctx, Options{
		ConfigYAML: env.Config,
		ConfigName: "<envoyproxy/ratelimit environment>",
		Components: []string{config.ComponentRateLimit},
		LookupEnv:  env.LookupEnv,
		Stdout:     stdout,
		Stderr:     stderr,
	})
	if err != nil {
		closeAll()
		return err
	}
	for _, n := range env.Notes {
		rt.log.Info("ratelimit-compat", "note", n)
	}
	rl, ok := rt.Component(config.ComponentRateLimit).(*ratelimit.Server)
	if !ok {
		closeAll()
		rt.closeAll()
		return errors.New("ratelimit-compat: the rate limit component did not start")
	}
	mux := http.NewServeMux()
	mux.Handle("/healthcheck", compatHealth(rt, rl, env))
	mux.Handle("/json", rl.JSONHandler())
	handlers := []http.Handler{mux}
	if env.PrometheusAddr != "" {
		pm := http.NewServeMux()
		pm.Handle(env.PrometheusPath, promhttp.HandlerFor(rt.Registry(), promhttp.HandlerOpts{}))
		handlers = append(handlers, pm)
	}
	servers := make([]*http.Server, len(lis))
	for i, l := range lis {
		srv := &http.Server{Handler: handlers[i], ReadHeaderTimeout: 10 * time.Second}
		servers[i] = srv
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				rt.log.Error("ratelimit-compat http server stopped", "address", l.Addr().String(), "err", err)
			}
		}()
		rt.log.Info("serving", "component", "ratelimit-compat http", "address", l.Addr().String())
	}
	// The HTTP listeners outlive the drain, so that /healthcheck answers
	// 500 while the gRPC servers finish what is in flight.
	err = rt.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	return err
}

// compatHealth is the reference's /healthcheck: "OK" while serving, 500
// once draining, while Redis does not answer (with
// REDIS_HEALTH_CHECK_ACTIVE_CONNECTION) or while no domain is loaded (with
// HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED).
func compatHealth(rt *Runtime, rl *ratelimit.Server, env *compat.Env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthy := !rt.Draining()
		if healthy && env.HealthNeedsConfig && rl.Domains() == 0 {
			healthy = false
		}
		if healthy && env.HealthRedis && rt.redis != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			healthy = redisx.Ping(ctx, rt.redis) == nil
			cancel()
		}
		if !healthy {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("OK"))
	})
}
