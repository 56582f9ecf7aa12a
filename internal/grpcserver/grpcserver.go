// Package grpcserver builds the gRPC servers gatehouse runs, one per
// component, all with the same deliberate settings: message size limits,
// keepalive, stream limits, the standard health service, server
// reflection (so grpcurl works), per-RPC metrics, tracing when on, and a
// last-resort panic guard.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// Server is one component's gRPC server with its listener and health.
type Server struct {
	Name   string
	GRPC   *grpc.Server
	Health *health.Server
	lis    net.Listener
	log    *slog.Logger
}

// Listen opens the listener for a component. A port in use or a bad
// address becomes one message naming the component and the address.
func Listen(name, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		var cause error = err
		var oe *net.OpError
		if errors.As(err, &oe) {
			cause = oe.Err
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: cannot listen on %s: the address is already in use (another gatehouse, or another server?); set %s.address to a free port", name, addr, name)
		}
		return nil, fmt.Errorf("%s: cannot listen on %s: %v", name, addr, cause)
	}
	return lis, nil
}

// New builds the gRPC server of a component on lis. The caller registers
// its services on s.GRPC, then calls Serve.
func New(name string, lis net.Listener, cfg config.GRPC, tr *telemetry.Tracing, m *Metrics, log *slog.Logger) *Server {
	ka := cfg.Keepalive
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(cfg.MaxRecvMessageSize)),
		grpc.MaxSendMsgSize(int(cfg.MaxSendMessageSize)),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  ka.Time.D(),
			Timeout:               ka.Timeout.D(),
			MaxConnectionAge:      orInfinity(ka.MaxConnectionAge.D()),
			MaxConnectionAgeGrace: ka.MaxConnectionAgeGrace.D(),
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             ka.MinClientPingInterval.D(),
			PermitWithoutStream: ka.PermitWithoutStream,
		}),
		grpc.ChainUnaryInterceptor(m.unary(name), recoverUnary(log)),
		grpc.ChainStreamInterceptor(m.stream(name), recoverStream(log)),
	}
	if h := tr.StatsHandler(); h != nil {
		opts = append(opts, grpc.StatsHandler(h))
	}
	s := &Server{Name: name, GRPC: grpc.NewServer(opts...), Health: health.NewServer(), lis: lis, log: log}
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	reflection.Register(s.GRPC)
	return s
}

func orInfinity(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Duration(1<<63 - 1)
	}
	return d
}

// Addr is the address the server listens on (with the real port when the
// config asked for port 0).
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve marks every registered service SERVING, and the server itself
// under its component name ("ratelimit", the name envoyproxy/ratelimit's
// health service answers to, which Envoy health checks may ask for), and
// serves until Stop.
func (s *Server) Serve() error {
	for name := range s.GRPC.GetServiceInfo() {
		s.Health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.Health.SetServingStatus(s.Name, healthpb.HealthCheckResponse_SERVING)
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	err := s.GRPC.Serve(s.lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Stop drains: health turns NOT_SERVING (so probing clients move away), no
// new RPCs are accepted, drain (when not nil) is called to end streams that
// would otherwise never finish, and in-flight RPCs may finish until ctx is
// done, when the remaining connections are closed.
func (s *Server) Stop(ctx context.Context, drain func()) {
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.GRPC.GracefulStop()
		close(done)
	}()
	if drain != nil {
		drain()
	}
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("drain deadline reached; closing remaining streams", "component", s.Name)
		s.GRPC.Stop()
		<-done
	}
}

// recoverUnary turns a panic in a handler into an Internal error instead of
// a crashed process. Handlers must not panic on any input (they are fuzzed);
// this is the last line, and it logs loudly when it fires.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in stream handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(srv, ss)
	}
}
