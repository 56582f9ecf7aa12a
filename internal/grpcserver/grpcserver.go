// Package grpcserver builds the gRPC servers gatehouse runs, one per
// component, all with the same deliberate settings: TLS with client
// certificates when configured, a receive limit of the server's own,
// bounded streams per connection and bytes in flight, fixed flow-control
// windows, keepalive, the standard health service, server reflection (so
// grpcurl works), per-RPC metrics that count every RPC, tracing when on,
// and a last-resort panic guard.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/telemetry"
)

// windowSize is the HTTP/2 flow-control window of every stream. Setting it
// turns off gRPC's dynamic window (which grows to 16 MiB per stream), so
// that a stream whose request waits for room in the in-flight budget can
// have at most this much of it buffered.
const windowSize = 64 << 10

// connWindowSize is the window of a whole connection.
const connWindowSize = 1 << 20

// streamWorkers is how many goroutines gRPC keeps to run streams (RPCs) on;
// beyond them an RPC gets a goroutine of its own, as without workers. A
// new goroutine's stack grows through gRPC's and the handler's frames on
// every RPC: under the rate limiter's load that growth (runtime.newstack,
// copystack) was 7% of the server's CPU, and with workers the CPU per
// request fell by about a tenth (28.6 and 26.1 µs against 30.2 and 30.1,
// scripts/ratelimit/profile.sh, two runs each). 64 per CPU covers the
// concurrency a core can serve; an idle worker costs a parked goroutine.
var streamWorkers = uint32(64 * runtime.NumCPU())

// Server is one component's gRPC server with its listener and health.
type Server struct {
	Name   string
	GRPC   *grpc.Server
	Health *health.Server
	lis    net.Listener
	log    *slog.Logger
	limit  int64
	budget *budget
	meter  *meter
	// services are the names of the registered services (string → true).
	services sync.Map
	// cut is how many RPCs the drain ended by closing their connections.
	cut atomic.Int64
	// draining is set by NotServing, which may come before Serve runs.
	draining atomic.Bool
}

// Options are what a server is built with.
type Options struct {
	// GRPC are the settings shared by every server.
	GRPC config.GRPC
	// RecvLimit is this server's largest request message
	// (config.ReceiveLimit).
	RecvLimit int64
	// TLS, when set, serves TLS (tls.Config from servertls).
	TLS     *tls.Config
	Tracing *telemetry.Tracing
	Metrics *Metrics
	Logger  *slog.Logger
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
// its services through s.Registrar(), then calls Serve.
func New(name string, lis net.Listener, o Options) *Server {
	cfg := o.GRPC
	ka := cfg.Keepalive
	limit := o.RecvLimit
	if limit <= 0 || limit > int64(cfg.MaxRecvMessageSize) {
		limit = int64(cfg.MaxRecvMessageSize)
	}
	s := &Server{Name: name, Health: health.NewServer(), lis: lis, log: o.Logger, limit: limit}
	s.budget = newBudget(int64(cfg.MaxInflightBytes), o.Metrics.inflight.WithLabelValues(name))
	s.meter = o.Metrics.meter(name)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(limit)),
		grpc.MaxSendMsgSize(int(cfg.MaxSendMessageSize)),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(connWindowSize),
		grpc.NumStreamWorkers(streamWorkers),
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
		// Every RPC is counted by the registrar's method wrappers (those
		// whose request never decoded included) and, for methods the
		// server does not have, by this handler; see meter.
		grpc.UnknownServiceHandler(s.unknown),
		// gRPC's proto codec, but a request that does not decode reaches
		// the registrar's wrapper, which answers InvalidArgument
		// (experimental API of grpc-go; TestBadInput holds it).
		grpc.ForceServerCodecV2(codec{encoding.GetCodecV2(protoenc.Name)}),
		grpc.ChainUnaryInterceptor(recoverUnary(o.Logger)),
		grpc.ChainStreamInterceptor(recoverStream(o.Logger)),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	if h := o.Tracing.StatsHandler(); h != nil {
		opts = append(opts, grpc.StatsHandler(h))
	}
	s.GRPC = grpc.NewServer(opts...)
	reg := s.Registrar()
	healthpb.RegisterHealthServer(reg, s.Health)
	reflection.Register(reflectionServer{reg, s.GRPC})
	return s
}

// reflectionServer registers reflection through the registrar, reading
// the services from the server.
type reflectionServer struct {
	grpc.ServiceRegistrar
	info reflection.ServiceInfoProvider
}

func (r reflectionServer) GetServiceInfo() map[string]grpc.ServiceInfo {
	return r.info.GetServiceInfo()
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

// RecvLimit is the server's largest request message.
func (s *Server) RecvLimit() int64 { return s.limit }

// Serve marks every registered service SERVING, and the server itself
// under its component name ("ratelimit", the name envoyproxy/ratelimit's
// health service answers to, which Envoy health checks may ask for), and
// serves until Stop.
func (s *Server) Serve() error {
	if !s.draining.Load() {
		s.setHealth(healthpb.HealthCheckResponse_SERVING)
	}
	if s.draining.Load() {
		// NotServing ran between the check and the set.
		s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	}
	err := s.GRPC.Serve(s.lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for name := range s.GRPC.GetServiceInfo() {
		s.Health.SetServingStatus(name, st)
	}
	s.Health.SetServingStatus(s.Name, st)
	s.Health.SetServingStatus("", st)
}

// NotServing turns gRPC health NOT_SERVING while the server goes on
// serving: the first phase of the drain, when clients that check health
// (Envoy's active health checks) move away before anything is refused.
func (s *Server) NotServing() {
	s.draining.Store(true)
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
}

// Stop drains: health turns NOT_SERVING (so probing clients move away), no
// new RPCs are accepted, drain (when not nil) is called to end streams that
// would otherwise never finish, and in-flight RPCs may finish until ctx is
// done, when the remaining connections are closed. It returns how many
// RPCs were cut that way.
func (s *Server) Stop(ctx context.Context, drain func()) int64 {
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
		return 0
	case <-ctx.Done():
	}
	n := s.meter.active.Load()
	s.cut.Store(n)
	s.log.Warn("drain deadline reached; closing remaining streams", "component", s.Name, "rpcs_cut", n)
	s.GRPC.Stop()
	<-done
	return n
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
