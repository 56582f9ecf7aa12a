// Package xds is gatehouse's xDS control plane: it turns the listeners,
// routes and clusters of the config into Envoy resources and serves them
// over ADS (envoy.service.discovery.v3.AggregatedDiscoveryService), State
// of the World and Delta, to Envoy proxies and proxyless gRPC clients.
//
// The pipeline is visible in the subpackages: translate (config → Envoy
// resources, pure) → snapshot (validate every resource, check consistency,
// version by content hash) → server (ADS, node groups, ACK/NACK tracking).
// On every config change the app calls Prepare, which runs the whole
// pipeline without touching what is served; commit pushes the result. An
// invalid config fails Prepare with file:line errors and the live
// snapshot stays.
package xds

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/render"
	"github.com/gatehouse/gatehouse/xds/server"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// Server is the xds component.
type Server struct {
	log *slog.Logger
	ads *server.Server
}

// New builds the control plane. It serves the config given to the first
// Prepare/commit.
func New(cfg *config.Config, deps component.Deps) (*Server, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ads, err := server.New(server.Options{Logger: log, Metrics: deps.Metrics, Audit: deps.Audit})
	if err != nil {
		return nil, err
	}
	return &Server{log: log, ads: ads}, nil
}

// Build runs the pipeline: translate cfg and build its snapshots, every
// resource validated. Errors are config.Errors naming the config element.
func Build(cfg *config.Config) (*snapshot.Set, error) {
	res, err := translate.Translate(cfg)
	if err != nil {
		return nil, config.Errors{{Path: "xds", Msg: "cannot translate the config: " + err.Error()}}
	}
	set, err := snapshot.Build(cfg, res)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			return nil, errs
		}
		return nil, config.Errors{{Path: "xds", Msg: err.Error()}}
	}
	return set, nil
}

// Validate checks the xds part of cfg beyond config.Validate: that it
// translates into resources Envoy's own validation rules accept, in
// consistent snapshots.
func Validate(cfg *config.Config) error {
	_, err := Build(cfg)
	return err
}

// Name implements component.Component.
func (s *Server) Name() string { return config.ComponentXDS }

// Register implements component.Component: ADS, State-of-the-World and
// Delta, on the component's gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) { s.ads.Register(g) }

// Prepare implements component.Component: validate → translate → build
// snapshots, without touching what is served. The commit pushes the new
// snapshots to the nodes whose group content changed; a config whose
// resources did not change pushes nothing.
func (s *Server) Prepare(cfg *config.Config) (func(), error) {
	start := time.Now()
	set, err := Build(cfg)
	s.ads.ObserveBuild(time.Since(start))
	if err != nil {
		return nil, err
	}
	return func() {
		old := s.ads.Current()
		changes := snapshot.Diff(old, set)
		s.ads.Push(set)
		if old != nil && old.Version == set.Version {
			s.log.Debug("xds resources unchanged", "version", set.Version)
			return
		}
		oldVersion := ""
		if old != nil {
			oldVersion = old.Version
		}
		s.log.Info("xds resources pushed", "version", set.Version, "old_version", oldVersion,
			"changed", len(changes), "resources", set.Resources.Count(), "build", time.Since(start).String())
	}, nil
}

// Ready implements component.Component: ready once a config is served.
func (s *Server) Ready(context.Context) error {
	if s.ads.Current() == nil {
		return errors.New("no config committed yet")
	}
	return nil
}

// Drain implements component.Drainer: ADS streams never end on their own,
// so draining ends them (the clients reconnect to another replica) rather
// than waiting out server.shutdownTimeout.
func (s *Server) Drain() { s.ads.Close() }

// Close implements component.Component.
func (s *Server) Close(context.Context) error {
	s.ads.Close()
	return nil
}

// AdminRoutes implements component.AdminRoutes: /xds/nodes (each node's
// group, sent/acked versions and NACK details) and /xds/resources (the
// live resources, as `gatehouse render` prints them).
func (s *Server) AdminRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /xds/nodes": s.ads.NodesHandler(),
		"GET /xds/resources": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			set := s.ads.Current()
			if set == nil {
				http.Error(w, "no config committed yet", http.StatusServiceUnavailable)
				return
			}
			format := render.YAML
			if r.URL.Query().Get("format") == "json" {
				format = render.JSON
			}
			b, err := render.Resources(set.Resources, format)
			if err != nil {
				s.log.Error("render xds resources", "err", err)
				http.Error(w, "cannot render resources", http.StatusInternalServerError)
				return
			}
			if format == render.JSON {
				w.Header().Set("Content-Type", "application/json")
			} else {
				w.Header().Set("Content-Type", "application/yaml")
			}
			_, _ = w.Write(b)
		}),
	}
}

// ADS returns the ADS server, for tests and benchmarks.
func (s *Server) ADS() *server.Server { return s.ads }
