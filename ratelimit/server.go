// Package ratelimit is gatehouse's rate limit service (RLS,
// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit): per-route,
// per-tier quotas and envoyproxy/ratelimit's config domains, counted in
// Redis across replicas (or in process for one replica).
//
// The pipeline is visible in the folders: quota compiles the config,
// algo holds the algorithms, store keeps the counters, limiter decides a
// request. This file is the gRPC transport and the component's life cycle.
package ratelimit

import (
	"context"
	"fmt"
	"sort"
	"strings"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/ratelimit/limiter"
	"github.com/gatehouse/gatehouse/ratelimit/quota"
)

// Server serves RLS.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	lim *limiter.Limiter
	rt  *runtime
	// info and unary are what the method handler gives interceptors, made
	// once rather than for every request.
	info  *grpc.UnaryServerInfo
	unary grpc.UnaryHandler
}

// New builds the rate limit service. The config is compiled by Prepare.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	if cfg.RateLimit == nil {
		return nil, fmt.Errorf("ratelimit: the config has no ratelimit section")
	}
	rt, err := newRuntime(cfg, deps)
	if err != nil {
		return nil, err
	}
	s := &Server{lim: rt.lim, rt: rt}
	s.info = &grpc.UnaryServerInfo{Server: s, FullMethod: rlsv3.RateLimitService_ShouldRateLimit_FullMethodName}
	s.unary = s.serveUnary
	return s, nil
}

// Validate compiles the ratelimit part of cfg (including the envoy config
// files it names) without serving it.
func Validate(cfg *config.Config) error {
	if cfg.RateLimit == nil {
		return nil
	}
	_, err := quota.Compile(cfg)
	return err
}

// CheckDomains reports each domain in used (the rate limit domains Envoy
// will send descriptors in, with the routes that do, as xDS renders them)
// that the ratelimit config does not declare: such descriptors are
// answered OK, as the reference answers an undeclared domain, so a
// mismatch would leave those routes limited by nothing.
func CheckDomains(cfg *config.Config, used map[string][]string) error {
	if cfg.RateLimit == nil || len(used) == 0 {
		return nil
	}
	snap, err := quota.Compile(cfg)
	if err != nil {
		return nil // Validate reports it
	}
	names := make([]string, 0, len(used))
	for d := range used {
		names = append(names, d)
	}
	sort.Strings(names)
	var errs config.Errors
	for _, d := range names {
		if _, ok := snap.Domain(d); !ok {
			errs.Add("ratelimit", "routes %s send rate limit descriptors in domain %q (as xds renders them), which this config does not declare (it declares %s): Envoy would be answered OK, nothing would limit them",
				strings.Join(used[d], ", "), d, strings.Join(declared(snap), ", "))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func declared(snap *quota.Snapshot) []string {
	if names := snap.DomainNames(); len(names) > 0 {
		return names
	}
	return []string{"none"}
}

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentRateLimit }

// Register implements component.Component: the RLS service, with a
// method handler of its own (see handle).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	desc := rlsv3.RateLimitService_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "ShouldRateLimit", Handler: s.handle}}
	g.RegisterService(&desc, s)
}

// handle is the generated ShouldRateLimit handler, but the request decodes
// without protobuf's reflection into one allocation (wire.go), the answer
// encodes itself (with gatehouse's gRPC codec, internal/grpcserver), and
// the interceptors get an info and a handler made once.
//
// The request's memory is pooled: nothing keeps a pointer into it once the
// handler returns (the answer's strings are its own or the config's; the
// request's strings are slices of a string of their own, never pooled).
func (s *Server) handle(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
	r := requestPool.Get().(*request)
	defer r.release()
	if err := dec(r); err != nil {
		return nil, err
	}
	if in == nil {
		return s.serveUnary(ctx, &r.msg)
	}
	return in(ctx, &r.msg, s.info, s.unary)
}

func (s *Server) serveUnary(ctx context.Context, req any) (any, error) {
	a, err := s.lim.Decide(ctx, req.(*rlsv3.RateLimitRequest))
	if err != nil {
		return nil, err
	}
	return response{a}, nil
}

// ShouldRateLimit implements the RLS method.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return s.lim.ShouldRateLimit(ctx, req)
}

// Prepare implements component.Component.
func (s *Server) Prepare(cfg *config.Config) (func(), error) { return s.rt.prepare(cfg) }

// Ready implements component.Component: the store answers.
func (s *Server) Ready(ctx context.Context) error { return s.rt.ready(ctx) }

// Close implements component.Component.
func (s *Server) Close(ctx context.Context) error { return s.rt.close() }
