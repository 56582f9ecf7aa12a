// Package admin is gatehouse's operations HTTP server: /healthz (the
// process is alive), /readyz (every enabled component is serving and its
// stores are reachable; warnings shown beside), /metrics (Prometheus)
// and /config (the effective config, secrets shown only as references).
// Components may add routes.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.yaml.in/yaml/v3"
)

// Check is one readiness check. It returns nil when ready, a *Warning
// (possibly wrapped) for a problem to report that does not make the
// process unready, any other error when not ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Warning is a problem /readyz reports and still answers 200 for: the
// component serves correctly now, but someone should act before it does
// not (a trust bundle about to expire), or a problem that taking every
// replica out of service would not mend (a trust bundle expired on all
// of them alike). Its text is shown as "warning: <Msg>".
type Warning struct{ Msg string }

func (w *Warning) Error() string { return w.Msg }

// Options are what the admin server shows.
type Options struct {
	Gatherer prometheus.Gatherer
	// Checks returns the current readiness checks (components come and go
	// with the drain).
	Checks func() []Check
	// Config returns the effective config, already redacted, as YAML.
	Config func() ([]byte, error)
	// Routes are extra handlers by ServeMux pattern.
	Routes map[string]http.Handler
	// CheckTimeout bounds /readyz.
	CheckTimeout time.Duration
	Logger       *slog.Logger
}

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	lis net.Listener
}

// New builds the server on lis.
func New(lis net.Listener, o Options) *Server {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.CheckTimeout)
		defer cancel()
		rep := runChecks(ctx, o.Checks())
		code := http.StatusOK
		if !rep.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, rep)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		b, err := o.Config()
		if err != nil {
			http.Error(w, "cannot render config", http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("format") == "json" {
			var v any
			if err := yaml.Unmarshal(b, &v); err != nil {
				http.Error(w, "cannot render config", http.StatusInternalServerError)
				return
			}
			writeJSON(w, http.StatusOK, v)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
	})
	for pattern, h := range o.Routes {
		mux.Handle(pattern, h)
	}
	return &Server{
		lis: lis,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		},
	}
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, letting requests finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Report is the /readyz body.
type Report struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

func runChecks(ctx context.Context, checks []Check) Report {
	rep := Report{Ready: true, Checks: make(map[string]string, len(checks))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Fn(ctx)
			mu.Lock()
			defer mu.Unlock()
			var w *Warning
			switch {
			case errors.As(err, &w):
				rep.Checks[c.Name] = "warning: " + err.Error()
				return
			case err != nil:
				rep.Ready = false
				rep.Checks[c.Name] = err.Error()
				return
			}
			rep.Checks[c.Name] = "ok"
		}()
	}
	wg.Wait()
	if len(checks) == 0 {
		rep.Ready = false
		rep.Checks["components"] = "none serving"
	}
	return rep
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
