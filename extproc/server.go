// Package authz is gatehouse's ext_proc server
// (envoy.service.ext_proc.v3.ExternalProcessor/Process).
package extproc

import (
	"context"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Server serves ext_proc. Until processors are implemented, Process answers
// Unimplemented, which Envoy treats as a failure (denied unless the filter
// is configured to fail open).
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	deps component.Deps
}

// New builds the ext_proc server.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	return &Server{deps: deps}, nil
}

// Validate checks the extproc part of cfg beyond what config.Validate does.
func Validate(cfg *config.Config) error { return nil }

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentExtProc }

// Register implements component.Component.
func (s *Server) Register(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, s) }

// Prepare implements component.Component.
func (s *Server) Prepare(cfg *config.Config) (func(), error) { return func() {}, nil }

// Ready implements component.Component.
func (s *Server) Ready(context.Context) error { return nil }

// Close implements component.Component.
func (s *Server) Close(context.Context) error { return nil }
