// Package xds is gatehouse's xDS control plane: it turns the routes,
// clusters and listeners of the config into Envoy resources and serves them
// over ADS (envoy.service.discovery.v3.AggregatedDiscoveryService).
package xds

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
)

// Server serves ADS. Until translation is implemented, the streams answer
// Unimplemented.
type Server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	deps component.Deps
}

// New builds the control plane.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	return &Server{deps: deps}, nil
}

// Validate checks the xds part of cfg beyond what config.Validate does.
func Validate(cfg *config.Config) error { return nil }

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentXDS }

// Register implements component.Component.
func (s *Server) Register(g *grpc.Server) { discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s) }

// Prepare implements component.Component.
func (s *Server) Prepare(cfg *config.Config) (func(), error) { return func() {}, nil }

// Ready implements component.Component.
func (s *Server) Ready(context.Context) error { return nil }

// Close implements component.Component.
func (s *Server) Close(context.Context) error { return nil }
