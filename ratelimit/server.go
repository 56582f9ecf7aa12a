// Package authz is gatehouse's rate limit service (RLS)
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit).
package ratelimit

import (
	"context"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Server serves RLS. Until quotas are implemented, ShouldRateLimit answers
// Unimplemented, which Envoy treats as a failure (denied unless the filter
// is configured to fail open).
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	deps component.Deps
}

// New builds the rate limit service (RLS).
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	return &Server{deps: deps}, nil
}

// Validate checks the ratelimit part of cfg beyond what config.Validate does.
func Validate(cfg *config.Config) error { return nil }

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentRateLimit }

// Register implements component.Component.
func (s *Server) Register(g *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(g, s) }

// Prepare implements component.Component.
func (s *Server) Prepare(cfg *config.Config) (func(), error) { return func() {}, nil }

// Ready implements component.Component.
func (s *Server) Ready(context.Context) error { return nil }

// Close implements component.Component.
func (s *Server) Close(context.Context) error { return nil }
