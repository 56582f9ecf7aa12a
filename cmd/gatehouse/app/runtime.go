package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/gatehouse/gatehouse/internal/admin"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/grpcserver"
	"github.com/gatehouse/gatehouse/internal/kv"
	"github.com/gatehouse/gatehouse/internal/redisx"
	"github.com/gatehouse/gatehouse/internal/servertls"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// Options start a Runtime.
type Options struct {
	// ConfigPath is a config file or directory; empty serves the embedded
	// default.
	ConfigPath string
	// ConfigYAML, when set, is the config itself (built in memory, as by
	// ratelimit-compat), named ConfigName; ConfigPath is then unused.
	ConfigYAML []byte
	ConfigName string
	// Components narrows the served components (default: all configured).
	Components []string
	// LogFormat and LogLevel override the config's server.log when set.
	LogFormat config.LogFormat
	LogLevel  config.LogLevel
	// Stdout receives audit lines (audit.stdout); Stderr receives logs.
	Stdout, Stderr io.Writer
	// LookupEnv resolves env: secrets (nil: the process environment).
	LookupEnv func(string) (string, bool)
}

// Runtime is a running `gatehouse serve`: one gRPC server per component,
// the admin server, the shared stores, and the config they all serve.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	level   *slog.LevelVar
	reg     *prometheus.Registry
	tracing *telemetry.Tracing
	redis   redis.UniversalClient
	// redisMon answers the redis readiness check from background pings.
	redisMon *redisx.Monitor
	audit    *audit.Logger
	served   []*served
	admin    *admin.Server
	metrics  *runtimeMetrics
	// tls is nil when server.tls is not set.
	tls *servertls.Source

	cfg      atomic.Pointer[config.Config]
	reloadMu sync.Mutex
	draining atomic.Bool
	// watching is closed once config file events are being watched.
	watching chan struct{}
}

// served is one component with its gRPC server.
type served struct {
	comp    component.Component
	srv     *grpcserver.Server
	serving atomic.Bool
}

type runtimeMetrics struct {
	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
	info       *prometheus.GaugeVec
	up         *prometheus.GaugeVec
}

// Start loads the config, builds every component and opens every listener.
// It returns a clear error (and leaves nothing running) when the config is
// invalid or a port is taken. Serving begins with Run.
func Start(ctx context.Context, o Options) (_ *Runtime, err error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	cfg, err := o.check()
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			return nil, fmt.Errorf("invalid config (%d %s):\n%w", len(errs), plural(len(errs), "problem", "problems"), errs)
		}
		return nil, err
	}
	r := &Runtime{opts: o, level: new(slog.LevelVar), reg: prometheus.NewRegistry(), watching: make(chan struct{})}
	r.level.Set(telemetry.Level(r.logLevel(cfg)))
	format := cfg.Server.Log.Format
	if o.LogFormat != "" {
		format = o.LogFormat
	}
	r.log = telemetry.NewLogger(o.Stderr, format, r.level)
	for _, w := range cfg.Warnings {
		r.log.Warn("config", "warning", w.Error())
	}

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if r.metrics, err = newRuntimeMetrics(r.reg); err != nil {
		return nil, err
	}
	grpcMetrics, err := grpcserver.NewMetrics(r.reg)
	if err != nil {
		return nil, err
	}

	applyMemoryLimit(cfg, r.log)
	if t := cfg.Server.TLS; t != nil {
		if r.tls, err = servertls.New(t, r.reg, r.log.With("component", "tls")); err != nil {
			return nil, err
		}
	}

	if r.tracing, err = telemetry.NewTracing(ctx, cfg.Server.Tracing, buildVersion()); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { _ = r.tracing.Shutdown(context.Background()) })

	if r.audit, err = audit.New(cfg.Audit, o.Stdout, r.reg, r.log.With("component", "audit")); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, func() { _ = r.audit.Close(context.Background()) })

	var store kv.Store
	keyPrefix := ""
	if cfg.Redis != nil {
		redis.SetLogger(redisLogger{r.log.With("component", "redis")})
		if r.redis, err = redisx.New(cfg.Redis); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { _ = r.redis.Close() })
		keyPrefix = cfg.Redis.KeyPrefix
		store = kv.NewRedis(r.redis, keyPrefix)
		pctx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout.D())
		if perr := redisx.Ping(pctx, r.redis); perr != nil {
			// Not a crash loop: serve, report not ready, and let each
			// component answer by its failure mode until Redis is back.
			r.log.Warn("redis is unreachable at start; serving by each component's failure mode and reporting not ready until it answers",
				"mode", cfg.Redis.Mode, "addresses", strings.Join(cfg.Redis.Addresses, ","), "err", perr)
		}
		cancel()
		// Readiness answers from the last background ping: at once.
		r.redisMon = redisx.NewMonitor(r.redis, 500*time.Millisecond, max(cfg.Redis.DialTimeout.D(), time.Second))
		cleanup = append(cleanup, r.redisMon.Close)
	} else {
		store = kv.NewMemory(0)
		r.log.Info("no redis configured: using the in-process store; rate-limit counters, webhook replay guards and idempotency records are local to this process, so run a single replica")
	}

	chosen, err := selectBuilders(cfg, o.Components)
	if err != nil {
		return nil, err
	}
	for _, b := range chosen {
		addr, _ := b.address(cfg)
		lis, err := grpcserver.Listen(b.name, addr)
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { _ = lis.Close() })
		clog := r.log.With("component", b.name)
		var redisReady func() error
		if r.redisMon != nil {
			redisReady = r.redisMon.Err
		}
		comp, err := b.build(cfg, component.Deps{
			Logger:     clog,
			Metrics:    r.reg,
			Redis:      r.redis,
			RedisReady: redisReady,
			KeyPrefix:  keyPrefix,
			KV:         store,
			Audit:      r.audit,
			Tracing:    r.tracing,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		cleanup = append(cleanup, func() { _ = comp.Close(context.Background()) })
		srv := grpcserver.New(b.name, lis, grpcserver.Options{
			GRPC:      cfg.Server.GRPC,
			RecvLimit: cfg.ReceiveLimit(b.name),
			TLS:       r.serverTLS(cfg, b.name),
			Tracing:   r.tracing,
			Metrics:   grpcMetrics,
			Logger:    clog,
		})
		clog.Debug("grpc limits", "max_recv_message_bytes", srv.RecvLimit(), "max_inflight_bytes", int64(cfg.Server.GRPC.MaxInflightBytes), "tls", r.tls != nil)
		comp.Register(srv.Registrar())
		r.served = append(r.served, &served{comp: comp, srv: srv})
	}
	// First config: every component must accept it before anything serves.
	if err := r.apply(cfg); err != nil {
		return nil, fmt.Errorf("invalid config:\n%w", err)
	}

	adminLis, err := grpcserver.Listen("server.admin", cfg.Server.Admin.Address)
	if err != nil {
		return nil, err
	}
	routes := map[string]http.Handler{}
	for _, s := range r.served {
		if ar, ok := s.comp.(component.AdminRoutes); ok {
			for p, h := range ar.AdminRoutes() {
				routes[p] = h
			}
		}
	}
	var sensitiveLis net.Listener
	if a := cfg.Server.Admin.SensitiveAddress; a != "" {
		if sensitiveLis, err = grpcserver.Listen("server.admin.sensitive", a); err != nil {
			_ = adminLis.Close()
			return nil, err
		}
	}
	r.admin = admin.New(adminLis, admin.Options{
		Gatherer:     r.reg,
		Checks:       r.checks,
		Config:       func() ([]byte, error) { return r.cfg.Load().Redacted() },
		Routes:       routes,
		Logger:       r.log,
		Sensitive:    sensitiveLis,
		SensitiveTLS: r.serverTLS(cfg, config.ServerAdmin),
	})
	r.metrics.info.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	return r, nil
}

// serverTLS is a server's tls.Config, or nil without server.tls.
func (r *Runtime) serverTLS(cfg *config.Config, server string) *tls.Config {
	if r.tls == nil {
		return nil
	}
	alpn := []string{"h2"}
	if server == config.ServerAdmin {
		alpn = append(alpn, "http/1.1")
	}
	return r.tls.ServerConfig(server, cfg.Server.TLS.Callers(server), alpn...)
}

// applyMemoryLimit sets the Go runtime's soft memory limit: the
// GOMEMLIMIT environment variable when set, else server.memoryLimit, else
// 90% of the cgroup's memory limit (automemlimit reads cgroup v1 and v2).
func applyMemoryLimit(cfg *config.Config, log *slog.Logger) {
	opts := []memlimit.Option{memlimit.WithLogger(log.With("component", "memlimit"))}
	if n := cfg.Server.MemoryLimit; n > 0 {
		opts = append(opts, memlimit.WithRatio(1), memlimit.WithProvider(memlimit.Limit(uint64(n))))
	} else {
		opts = append(opts, memlimit.WithRatio(0.9), memlimit.WithProvider(memlimit.FromCgroup))
	}
	limit, err := memlimit.Set(opts...)
	if err != nil {
		log.Warn("cannot set the soft memory limit; set GOMEMLIMIT or server.memoryLimit", "err", err)
		return
	}
	if limit < math.MaxInt64 {
		log.Info("soft memory limit", "bytes", limit)
	}
}

func (r *Runtime) logLevel(cfg *config.Config) config.LogLevel {
	if r.opts.LogLevel != "" {
		return r.opts.LogLevel
	}
	return cfg.Server.Log.Level
}

func newRuntimeMetrics(reg prometheus.Registerer) (*runtimeMetrics, error) {
	m := &runtimeMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_config_reloads_total",
			Help: "Config reloads by result: applied, unchanged or rejected (the last good config kept serving).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_config_last_applied_timestamp_seconds",
			Help: "When the serving config was applied.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_build_info",
			Help: "Build information; the value is always 1.",
		}, []string{"version", "goversion"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_component_serving",
			Help: "1 while the component's gRPC server accepts RPCs.",
		}, []string{"component"}),
	}
	for _, c := range []prometheus.Collector{m.reloads, m.lastReload, m.info, m.up} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, res := range []string{"applied", "unchanged", "rejected"} {
		m.reloads.WithLabelValues(res)
	}
	return m, nil
}

// redisLogger routes go-redis' own messages (dial failures and the like)
// into the structured log instead of a bare line on stderr.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Log(ctx, slog.LevelDebug, fmt.Sprintf(format, v...))
}

// Config returns the config being served.
func (r *Runtime) Config() *config.Config { return r.cfg.Load() }

// Addr returns the gRPC address a component listens on, or "".
func (r *Runtime) Addr(component string) string {
	for _, s := range r.served {
		if s.comp.Name() == component {
			return s.srv.Addr()
		}
	}
	return ""
}

// AdminAddr returns the admin server's address.
func (r *Runtime) AdminAddr() string { return r.admin.Addr() }

// Registry is the runtime's metrics registry.
func (r *Runtime) Registry() *prometheus.Registry { return r.reg }

// checks are the readiness checks: every component serving and ready, and
// Redis answering when configured.
func (r *Runtime) checks() []admin.Check {
	var out []admin.Check
	for _, s := range r.served {
		out = append(out, admin.Check{Name: s.comp.Name(), Fn: func(ctx context.Context) error {
			if r.draining.Load() {
				return errors.New("draining")
			}
			if !s.serving.Load() {
				return errors.New("not serving")
			}
			return s.comp.Ready(ctx)
		}})
	}
	if r.redisMon != nil {
		out = append(out, admin.Check{Name: "redis", Fn: func(context.Context) error {
			return r.redisMon.Err()
		}})
	}
	return out
}

// Run serves until ctx is done, then drains: readiness turns false, the
// gRPC servers stop accepting and let in-flight RPCs finish until
// server.shutdownTimeout, then components, audit, Redis and tracing close.
// Reloads come from SIGHUP and from changes to the config files.
func (r *Runtime) Run(ctx context.Context) error {
	cfg := r.cfg.Load()
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range r.served {
		g.Go(func() error {
			s.serving.Store(true)
			r.metrics.up.WithLabelValues(s.comp.Name()).Set(1)
			r.log.Info("serving", "component", s.comp.Name(), "address", s.srv.Addr())
			err := s.srv.Serve()
			s.serving.Store(false)
			r.metrics.up.WithLabelValues(s.comp.Name()).Set(0)
			if err != nil {
				return fmt.Errorf("%s: %w", s.comp.Name(), err)
			}
			return nil
		})
	}
	g.Go(func() error {
		r.log.Info("serving", "component", "admin", "address", r.admin.Addr())
		if err := r.admin.Serve(); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		r.watch(gctx)
		return nil
	})
	if r.tls != nil {
		g.Go(func() error {
			r.tls.Run(gctx)
			return nil
		})
	}
	var cut int64
	g.Go(func() error {
		<-gctx.Done()
		cut = r.shutdown()
		return nil
	})
	r.log.Info("gatehouse started", "version", buildVersion(), "config_version", cfg.Version, "config", r.configName())
	err := g.Wait()
	r.closeAll()
	if err == nil && cut > 0 {
		r.log.Error("stopped with in-flight RPCs cut at server.shutdownTimeout", "rpcs_cut", cut)
		return &ExitError{Code: ExitRPCsCut}
	}
	return err
}

// ExitRPCsCut is the exit status of a drain that ran out of
// server.shutdownTimeout and closed connections with RPCs still in flight
// (0: every RPC finished; 1: an error).
const ExitRPCsCut = 3

func (r *Runtime) configName() string {
	switch {
	case r.opts.ConfigYAML != nil:
		return r.opts.ConfigName
	case r.opts.ConfigPath == "":
		return "embedded default"
	}
	return r.opts.ConfigPath
}

// check loads the served config and runs every component's checks.
func (o *Options) check() (*config.Config, error) {
	opts := config.LoadOptions{LookupEnv: o.LookupEnv}
	if o.ConfigYAML == nil {
		return checkConfig(o.ConfigPath, opts)
	}
	cfg, err := config.LoadBytes(o.ConfigName, o.ConfigYAML, opts)
	if err != nil {
		return nil, err
	}
	return validated(cfg)
}

// Draining reports whether the runtime is shutting down.
func (r *Runtime) Draining() bool { return r.draining.Load() }

// Component returns the served component of that name, or nil.
func (r *Runtime) Component(name string) component.Component {
	for _, s := range r.served {
		if s.comp.Name() == name {
			return s.comp
		}
	}
	return nil
}

// shutdown drains in two phases and returns how many RPCs it cut. First
// the drain delay: readiness and gRPC health say NOT_SERVING while every
// listener keeps accepting and serving, so that Kubernetes takes the pod
// out of its Services and Envoy's health checks move requests to other
// replicas before anything is refused. Then the servers stop accepting,
// ADS streams end, and in-flight RPCs get server.shutdownTimeout.
func (r *Runtime) shutdown() int64 {
	r.draining.Store(true)
	srv := r.cfg.Load().Server
	for _, s := range r.served {
		s.srv.NotServing()
	}
	if d := srv.DrainDelay.D(); d > 0 {
		// A second SIGTERM or Ctrl-C ends the wait (an operator in a
		// hurry); the drain itself still runs.
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		r.log.Info("draining: not ready, still serving for the drain delay", "delay", d.String())
		select {
		case <-time.After(d):
		case <-again:
			r.log.Info("draining: second signal, the drain delay ends now")
		}
		signal.Stop(again)
	}
	timeout := srv.ShutdownTimeout.D()
	r.log.Info("draining", "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	var cut atomic.Int64
	for _, s := range r.served {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var drain func()
			if d, ok := s.comp.(component.Drainer); ok {
				drain = d.Drain
			}
			cut.Add(s.srv.Stop(ctx, drain))
		}()
	}
	wg.Wait()
	_ = r.admin.Shutdown(ctx)
	return cut.Load()
}

// closeAll releases what the servers used, after they stopped, within
// server.closeTimeout: what has not closed by then is left to the exit.
func (r *Runtime) closeAll() {
	timeout := r.cfg.Load().Server.CloseTimeout.D()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.close(ctx)
	}()
	select {
	case <-done:
		r.log.Info("stopped")
	case <-ctx.Done():
		r.log.Warn("stopped before everything closed: server.closeTimeout reached", "timeout", timeout.String())
	}
}

func (r *Runtime) close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range r.served {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.comp.Close(ctx); err != nil {
				r.log.Warn("close", "component", s.comp.Name(), "err", err)
			}
		}()
	}
	wg.Wait()
	if err := r.audit.Close(ctx); err != nil {
		r.log.Warn("close audit", "err", err)
	}
	if r.redisMon != nil {
		r.redisMon.Close()
	}
	if r.redis != nil {
		_ = r.redis.Close()
	}
	_ = r.tracing.Shutdown(ctx)
}

// apply prepares cfg on every component and, only when all accept it,
// commits it everywhere.
func (r *Runtime) apply(cfg *config.Config) error {
	commits := make([]func(), 0, len(r.served))
	var errs config.Errors
	for _, s := range r.served {
		commit, err := s.comp.Prepare(cfg)
		if err != nil {
			errs = append(errs, asErrors(s.comp.Name(), err)...)
			continue
		}
		commits = append(commits, commit)
	}
	if len(errs) > 0 {
		return errs.Located(cfg.Source)
	}
	for _, c := range commits {
		c()
	}
	r.cfg.Store(cfg)
	r.level.Set(telemetry.Level(r.logLevel(cfg)))
	r.metrics.lastReload.SetToCurrentTime()
	return nil
}
