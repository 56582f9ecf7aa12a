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
	return &Server{lim: rt.lim, rt: rt}, nil
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

// Register implements component.Component.
func (s *Server) Register(g grpc.ServiceRegistrar) { rlsv3.RegisterRateLimitServiceServer(g, s) }

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
