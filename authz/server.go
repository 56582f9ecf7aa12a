// Package authz is gatehouse's ext_authz server
// (envoy.service.auth.v3.Authorization/Check).
package authz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Server serves ext_authz. Until policies are implemented, Check answers
// Unimplemented, which Envoy treats as a failure (denied unless the filter
// is configured to fail open).
type Server struct {
	authv3.UnimplementedAuthorizationServer
	deps component.Deps
}

// New builds the ext_authz server.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	return &Server{deps: deps}, nil
}

// Validate checks the authz part of cfg beyond what config.Validate does.
func Validate(cfg *config.Config) error { return nil }

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentAuthz }

// Register implements component.Component.
func (s *Server) Register(g *grpc.Server) { authv3.RegisterAuthorizationServer(g, s) }

// Prepare implements component.Component.
func (s *Server) Prepare(cfg *config.Config) (func(), error) { return func() {}, nil }

// Ready implements component.Component.
func (s *Server) Ready(context.Context) error { return nil }

// Close implements component.Component.
func (s *Server) Close(context.Context) error { return nil }
