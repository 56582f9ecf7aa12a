package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// TestReadyzWarnings: a warning is shown and keeps /readyz at 200; an
// error beside it makes it 503.
func TestReadyzWarnings(t *testing.T) {
	warn := func(context.Context) error {
		return fmt.Errorf("authz: %w", &Warning{Msg: "mtls trust domain a.example: bundle (inline) expiring"})
	}
	ok := func(context.Context) error { return nil }
	fail := func(context.Context) error { return errors.New("redis: connection refused") }
	tests := []struct {
		name   string
		checks []Check
		status int
		want   map[string]string
	}{
		{"warning only", []Check{{"authz", warn}, {"xds", ok}}, http.StatusOK,
			map[string]string{"authz": "warning: authz: mtls trust domain a.example: bundle (inline) expiring", "xds": "ok"}},
		{"warning and failure", []Check{{"authz", warn}, {"redis", fail}}, http.StatusServiceUnavailable,
			map[string]string{"authz": "warning: authz: mtls trust domain a.example: bundle (inline) expiring", "redis": "redis: connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := New(lis, Options{Gatherer: prometheus.NewRegistry(), Checks: func() []Check { return tt.checks },
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			go func() { _ = s.Serve() }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			})
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + s.Addr() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var rep Report
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || rep.Ready != (tt.status == http.StatusOK) {
				t.Errorf("GET /readyz = %d, ready %t; want %d", resp.StatusCode, rep.Ready, tt.status)
			}
			if diff := cmp.Diff(tt.want, rep.Checks); diff != "" {
				t.Errorf("GET /readyz checks (-want +got):\n%s", diff)
			}
		})
	}
}
