// Package admin is gatehouse's operations HTTP server: /healthz (the
// process is alive), /readyz (every enabled component is serving and its
// stores are reachable; warnings shown beside), /metrics (Prometheus),
// and the sensitive pages: /config (the effective config, secrets shown
// only as references) and the routes components add (/xds/resources,
// POST /authz/jwks/refresh, ...). The sensitive pages may have a
// listener of their own, over mTLS.
package admin

import (
	"context"
	"crypto/tls"
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
	// Sensitive, when set, is the listener of the sensitive pages (/config
	// and Routes), which lis then does not serve; with SensitiveTLS it
	// serves HTTPS to the callers that config admits.
	Sensitive    net.Listener
	SensitiveTLS *tls.Config
}

// Server is the admin HTTP server.
type Server struct {
	srv, sensitive *http.Server
	lis, slis      net.Listener
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
	smux := mux
	if o.Sensitive != nil {
		smux = http.NewServeMux()
	}
	smux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
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
		smux.Handle(pattern, h)
	}
	s := &Server{lis: lis, srv: httpServer(mux, o.Logger)}
	if o.Sensitive != nil {
		s.slis = o.Sensitive
		if o.SensitiveTLS != nil {
			s.slis = tls.NewListener(o.Sensitive, o.SensitiveTLS)
		}
		s.sensitive = httpServer(smux, o.Logger)
	}
	return s
}

func httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Addr is the listening address.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// SensitiveAddr is the sensitive pages' own address, or "".
func (s *Server) SensitiveAddr() string {
	if s.slis == nil {
		return ""
	}
	return s.slis.Addr().String()
}

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	errc := make(chan error, 1)
	if s.sensitive != nil {
		go func() { errc <- s.sensitive.Serve(s.slis) }()
	}
	err := s.srv.Serve(s.lis)
	if s.sensitive != nil {
		if !errors.Is(err, http.ErrServerClosed) {
			_ = s.sensitive.Close()
		}
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, letting requests finish until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.sensitive != nil {
		err = s.sensitive.Shutdown(ctx)
	}
	return errors.Join(s.srv.Shutdown(ctx), err)
}

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
