package xds_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const good = `apiVersion: gatehouse/v1
xds: {}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
  - {name: c, endpoints: [{address: 10.0.0.1:80}]}
routes:
  - {id: r, match: {prefix: /}, cluster: c}
`

func load(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("gatehouse.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newServer(t *testing.T) *xds.Server {
	t.Helper()
	s, err := xds.New(load(t, good), component.Deps{Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// TestPrepareRejectsInvalid: a config that slipped past validation but
// would produce an invalid or inconsistent snapshot fails Prepare with
// errors at the config element, and the live snapshot stays.
func TestPrepareRejectsInvalid(t *testing.T) {
	s := newServer(t)
	if err := s.Ready(context.Background()); err == nil {
		t.Error("Ready() = nil before any config; want an error")
	}
	commit, err := s.Prepare(load(t, good))
	if err != nil {
		t.Fatal(err)
	}
	commit()
	if err := s.Ready(context.Background()); err != nil {
		t.Errorf("Ready() = %v after a commit", err)
	}
	live := s.ADS().Current().Version

	tests := []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"dangling cluster", func(c *config.Config) { c.Routes[0].Cluster = "missing" }, `route "r" sends to cluster "missing", which is missing`},
		{"empty tls file", func(c *config.Config) {
			c.Listeners[0].TLS = &config.ListenerTLS{MinVersion: config.TLS12}
		}, `listeners[0]: the Envoy resource "listener/public" would be invalid`},
		{"zero timeout cluster", func(c *config.Config) { c.Clusters[0].ConnectTimeout = 0 }, `clusters[0]: the Envoy resource "c" would be invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(t, good)
			tt.edit(cfg)
			_, err := s.Prepare(cfg)
			var errs config.Errors
			if !errors.As(err, &errs) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare() = %v; want config.Errors containing %q", err, tt.want)
			}
			if got := s.ADS().Current().Version; got != live {
				t.Errorf("live version = %s after a rejected Prepare; want %s", got, live)
			}
		})
	}
}

func TestAdminRoutes(t *testing.T) {
	s := newServer(t)
	commit, err := s.Prepare(load(t, good))
	if err != nil {
		t.Fatal(err)
	}
	commit()
	routes := s.AdminRoutes()
	for pattern, want := range map[string]string{
		"GET /xds/resources": "name: listener/public",
		"GET /xds/nodes":     `"nodes": []`,
	} {
		h, ok := routes[pattern]
		if !ok {
			t.Fatalf("AdminRoutes() lacks %q", pattern)
		}
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, httptest.NewRequest("GET", strings.TrimPrefix(pattern, "GET "), nil))
		if rr.Code != 200 || !strings.Contains(rr.Body.String(), want) {
			t.Errorf("%s = %d %q; want 200 containing %q", pattern, rr.Code, rr.Body.String(), want)
		}
	}
}
