// Package servertls serves gatehouse's own servers over mutual TLS: the
// server certificate and the client trust roots (PEM roots, SPIFFE
// bundles) are loaded from files and loaded again whenever those files
// change, and each server admits only the callers its allow list names, by
// SPIFFE id or DNS SAN. A refused caller fails the TLS handshake: it never
// reaches a gRPC method or an admin page.
package servertls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/time/rate"

	"github.com/gatehouse/gatehouse/internal/config"
)

// Reasons a caller is refused, also the reason label of
// gatehouse_tls_refused_total.
const (
	ReasonNoCertificate = "no_certificate"
	ReasonUntrusted     = "untrusted"
	ReasonNotAllowed    = "not_allowed"
)

// material is one loaded set of files.
type material struct {
	cert    *tls.Certificate
	pool    *x509.CertPool // nil without clientCAFile
	bundles *x509bundle.Set
	digest  [sha256.Size]byte
}

// Source holds the current certificate and trust roots.
type Source struct {
	cfg *config.ServerTLS
	log *slog.Logger
	cur atomic.Pointer[material]
	m   *metrics
	// mu serializes reloads.
	mu sync.Mutex
	// warn rate-limits the log line of a refused caller: a scanner must
	// not flood the log, the metric counts every one.
	warn *rate.Limiter
}

type metrics struct {
	reloads *prometheus.CounterVec
	expiry  prometheus.Gauge
	refused *prometheus.CounterVec
}

// New loads the files once; an error names the file that does not load.
func New(cfg *config.ServerTLS, reg prometheus.Registerer, log *slog.Logger) (*Source, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_tls_reloads_total",
			Help: "Reloads of the server certificate and client trust roots after their files changed, by result (applied, or rejected: the last good set kept serving).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_tls_certificate_expiry_timestamp_seconds",
			Help: "When the server certificate being served expires (Unix time).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_tls_refused_total",
			Help: "TLS handshakes refused, by server and reason (no_certificate, untrusted, not_allowed).",
		}, []string{"server", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.reloads, m.expiry, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	s := &Source{cfg: cfg, log: log, m: m, warn: rate.NewLimiter(rate.Every(10*time.Second), 5)}
	mat, err := load(cfg)
	if err != nil {
		return nil, err
	}
	s.set(mat)
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("rejected")
	return s, nil
}

func (s *Source) set(mat *material) {
	s.cur.Store(mat)
	if len(mat.cert.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(mat.cert.Certificate[0]); err == nil {
			s.m.expiry.Set(float64(leaf.NotAfter.Unix()))
		}
	}
}

// Reload loads the files again and, when they load, serves them to new
// handshakes; otherwise the last good set keeps serving. It reports
// whether anything changed.
func (s *Source) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mat, err := load(s.cfg)
	if err != nil {
		s.m.reloads.WithLabelValues("rejected").Inc()
		return false, err
	}
	if mat.digest == s.cur.Load().digest {
		return false, nil
	}
	s.set(mat)
	s.m.reloads.WithLabelValues("applied").Inc()
	return true, nil
}

// load reads every file. A key that does not match its certificate (a
// rotation caught between two writes) is an error, so the old pair stays.
func load(cfg *config.ServerTLS) (*material, error) {
	h := sha256.New()
	read := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("servertls: %w", err)
		}
		h.Write([]byte(path))
		h.Write(b)
		return b, nil
	}
	certPEM, err := read(cfg.CertFile.String())
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(cfg.KeyFile.String())
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("servertls: %s with %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	mat := &material{cert: &cert, bundles: x509bundle.NewSet()}
	if cfg.ClientCAFile != "" {
		b, err := read(cfg.ClientCAFile.String())
		if err != nil {
			return nil, err
		}
		mat.pool = x509.NewCertPool()
		if !mat.pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("servertls: %s holds no PEM certificate", cfg.ClientCAFile)
		}
	}
	for _, sb := range cfg.SPIFFEBundles {
		b, err := read(sb.File.String())
		if err != nil {
			return nil, err
		}
		xb, err := parseBundle(sb.TrustDomain.TrustDomain(), b)
		if err != nil {
			return nil, fmt.Errorf("servertls: %s: %w", sb.File, err)
		}
		mat.bundles.Add(xb)
	}
	copy(mat.digest[:], h.Sum(nil))
	return mat, nil
}

// parseBundle reads a SPIFFE bundle document (JSON) or PEM certificates.
func parseBundle(td spiffeid.TrustDomain, b []byte) (*x509bundle.Bundle, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		sb, err := spiffebundle.Parse(td, b)
		if err != nil {
			return nil, err
		}
		if len(sb.X509Authorities()) == 0 {
			return nil, errors.New("the SPIFFE bundle has no X.509 authority")
		}
		return sb.X509Bundle(), nil
	}
	return x509bundle.Parse(td, b)
}

// Identity is what a verified client certificate says.
type Identity struct {
	// SPIFFEID is zero when the certificate has none.
	SPIFFEID spiffeid.ID
	DNSNames []string
}

// String names the caller in logs: its SPIFFE id, else its first DNS SAN.
func (id Identity) String() string {
	switch {
	case !id.SPIFFEID.IsZero():
		return id.SPIFFEID.String()
	case len(id.DNSNames) > 0:
		return "dns:" + id.DNSNames[0]
	}
	return "(no identity)"
}

// Verify verifies a client's chain against the current trust roots: a
// certificate with a SPIFFE id whose trust domain has a bundle is an
// X509-SVID verified by that bundle (go-spiffe); any other is verified by
// clientCAFile for client authentication.
func (s *Source) Verify(chain []*x509.Certificate) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, errors.New("no client certificate")
	}
	mat := s.cur.Load()
	leaf := chain[0]
	id, idErr := x509svid.IDFromCert(leaf)
	if idErr == nil {
		if _, err := mat.bundles.GetX509BundleForTrustDomain(id.TrustDomain()); err == nil {
			if _, _, err := x509svid.Verify(chain, mat.bundles); err != nil {
				return Identity{}, err
			}
			return Identity{SPIFFEID: id, DNSNames: leaf.DNSNames}, nil
		}
	}
	if mat.pool == nil {
		if idErr == nil {
			return Identity{}, fmt.Errorf("no bundle for trust domain %q", id.TrustDomain())
		}
		return Identity{}, errors.New("the certificate has no SPIFFE id and no clientCAFile is set")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: mat.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return Identity{}, err
	}
	out := Identity{DNSNames: leaf.DNSNames}
	if idErr == nil {
		out.SPIFFEID = id
	}
	return out, nil
}

// ServerConfig is the tls.Config of one server: the current certificate,
// HTTP/2 (and HTTP/1.1 for the admin server), TLS 1.2 at least, and a
// client certificate verified and admitted by callers.
func (s *Source) ServerConfig(server string, callers []config.Caller, alpn ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: alpn,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
		// Verification is VerifyConnection's, against roots that reload;
		// it also refuses a handshake without a certificate, so that such
		// a caller is counted like any other refused one.
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.admit(server, callers, cs)
		},
	}
}

func (s *Source) admit(server string, callers []config.Caller, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return s.refuse(server, ReasonNoCertificate, Identity{}, nil)
	}
	id, err := s.Verify(cs.PeerCertificates)
	if err != nil {
		return s.refuse(server, ReasonUntrusted, Identity{}, err)
	}
	if !config.MatchAny(callers, id.SPIFFEID, id.DNSNames) {
		return s.refuse(server, ReasonNotAllowed, id, nil)
	}
	return nil
}

func (s *Source) refuse(server, reason string, id Identity, err error) error {
	s.m.refused.WithLabelValues(server, reason).Inc()
	if s.warn.Allow() {
		args := []any{"server", server, "reason", reason}
		if reason == ReasonNotAllowed {
			args = append(args, "caller", id.String())
		}
		if err != nil {
			args = append(args, "err", err.Error())
		}
		s.log.Warn("tls: caller refused", args...)
	}
	if reason == ReasonNotAllowed {
		return fmt.Errorf("servertls: %s may not call %s", id, server)
	}
	return fmt.Errorf("servertls: %s", reason)
}

// Run reloads the files whenever they change, until ctx is done.
func (s *Source) Run(ctx context.Context) {
	w, err := newWatcher(s.cfg.Files())
	if err != nil {
		s.log.Warn("tls: cannot watch the certificate files; they reload on SIGHUP only", "err", err)
		<-ctx.Done()
		return
	}
	defer w.close()
	w.run(ctx, 200*time.Millisecond, func() { s.reloadLogged("file change") })
}

// ReloadLogged reloads and logs the outcome (SIGHUP and file changes).
func (s *Source) ReloadLogged(trigger string) { s.reloadLogged(trigger) }

func (s *Source) reloadLogged(trigger string) {
	changed, err := s.Reload()
	switch {
	case err != nil:
		s.log.Error("tls: reload rejected; the last good certificate and trust roots keep serving", "trigger", trigger, "err", err.Error())
	case changed:
		s.log.Info("tls: certificate and trust roots reloaded", "trigger", trigger)
	}
}
