// Package extproc is gatehouse's ext_proc server
// (envoy.service.ext_proc.v3.ExternalProcessor/Process): per route, header
// hygiene and correlation, OpenAPI contract validation, JSON redaction and
// idempotency keys, composed in a fixed order.
//
// server.go is the gRPC transport only; the per-stream state machine is in
// stream.go (testable without gRPC) and each processor is a package of its
// own: hygiene, openapi, redact, idempotency.
package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/extproc/idempotency"
	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/ratelimit/budget"
)

// Server serves ext_proc.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	deps  component.Deps
	log   *slog.Logger
	m     *metrics
	store idempotency.Store
	rt    atomic.Pointer[runtime]
	// budgets keeps the routes' cost budgets (the budget stage).
	budgets budget.Store
	bm      *budgetMetrics
}

// New builds the ext_proc server. The first config is applied by Prepare.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	bm, err := newBudgetMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{deps: deps, log: deps.Logger, m: m, bm: bm}
	switch {
	case deps.Redis != nil:
		s.store = idempotency.NewRedis(deps.Redis, deps.KeyPrefix)
		s.budgets = budget.NewRedis(deps.Redis, budget.RedisOptions{KeyPrefix: deps.KeyPrefix})
	default:
		s.budgets = budget.NewMemory(budget.MemoryOptions{})
		n := 100_000
		if cfg.ExtProc != nil {
			n = cfg.ExtProc.Idempotency.MemoryMaxKeys
		}
		s.store = idempotency.NewMemory(n)
	}
	// Serve nothing until the first Prepare/commit, but never a nil
	// runtime.
	s.rt.Store(&runtime{routes: map[string]*route{}, resolve: emptyResolver(), grpcResolve: emptyResolver(), timeout: config.Defaults[config.ExtProc]().MessageTimeout.D(), none: &route{id: noRoute, m: m.forRoute(noRoute)}})
	return s, nil
}

// Validate checks the extproc part of cfg beyond what config.Validate
// does: OpenAPI documents (file and line of what is wrong), redaction
// paths.
func Validate(cfg *config.Config) error {
	if cfg.ExtProc == nil {
		return nil
	}
	_, err := compile(context.Background(), cfg, nil)
	return err
}

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentExtProc }

// Register implements component.Component.
func (s *Server) Register(g grpc.ServiceRegistrar) { extprocv3.RegisterExternalProcessorServer(g, s) }

// Prepare implements component.Component: it compiles every route's
// processors (documents loaded and routers built once, here, not per
// request) and returns the swap.
func (s *Server) Prepare(cfg *config.Config) (func(), error) {
	rt, err := compile(context.Background(), cfg, s.m)
	if err != nil {
		return nil, err
	}
	return func() {
		old := s.rt.Swap(rt)
		for id := range old.routes {
			if _, ok := rt.routes[id]; !ok {
				s.m.forget(id)
				s.bm.forget(id)
			}
		}
	}, nil
}

// Ready implements component.Component: with routes using idempotency or
// budgets, their store must answer. On the shared Redis the answer is the
// runtime's last background ping (Deps.RedisReady), so that /readyz stays
// quick while Redis stalls; otherwise the stores are asked.
func (s *Server) Ready(ctx context.Context) error {
	rt := s.rt.Load()
	needIdem := false
	for _, r := range rt.routes {
		if r.idem != nil {
			needIdem = true
			break
		}
	}
	if !needIdem && len(rt.budgets) == 0 {
		return nil
	}
	if s.deps.Redis != nil && s.deps.RedisReady != nil {
		return s.deps.RedisReady()
	}
	if len(rt.budgets) > 0 {
		if err := s.budgets.Ping(ctx); err != nil {
			return err
		}
	}
	if needIdem {
		return s.store.Ping(ctx)
	}
	return nil
}

// Close implements component.Component; streams end with the gRPC server.
func (s *Server) Close(context.Context) error { return nil }

// Process serves one stream: one HTTP request, its messages answered in
// order until Envoy half-closes, cancels, or gatehouse answers with an
// immediate response.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) (err error) {
	if stageOf(srv.Context()) == contract.ExtProcStageBudget {
		// The budget filter's stream (budget_stream.go).
		s.m.stages.WithLabelValues(contract.ExtProcStageBudget).Inc()
		return s.processBudget(srv)
	}
	ctx := srv.Context()
	stage, serr := streamStage(ctx)
	if serr != nil {
		s.m.protocol.WithLabelValues("unknown_stage").Inc()
		return status.Error(codes.InvalidArgument, serr.Error())
	}
	s.m.stageStreams(stage).Inc()
	st := s.newStream()
	st.stage, st.streamRoute = stage, streamRouteID(ctx)
	defer func() { st.finish(err) }()
	for {
		req, rerr := srv.Recv()
		if errors.Is(rerr, io.EOF) {
			return nil // Envoy is done with this request
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return rerr
		}
		resp, herr := st.handle(ctx, req)
		if herr != nil {
			return herr
		}
		if resp == nil {
			continue
		}
		if st.grpc {
			resp = grpcClientAnswer(resp)
		}
		if serr := srv.Send(resp); serr != nil {
			if ctx.Err() != nil {
				return status.FromContextError(ctx.Err()).Err()
			}
			return status.Errorf(codes.Unavailable, "extproc: send: %v", serr)
		}
		st.delivered()
		if st.done {
			return nil // Envoy sends nothing after an immediate response
		}
	}
}

// logAllowed rate-limits a route's report-only log lines to one a second:
// a misbehaving upstream must not flood the log.
func (s *Server) logAllowed(r *route) bool {
	now := time.Now().UnixNano()
	last := r.lastLog.Load()
	return now-last >= int64(time.Second) && r.lastLog.CompareAndSwap(last, now)
}
