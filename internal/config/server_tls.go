package config

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// ServerTLS serves gatehouse's own servers over TLS with client
// certificates (mTLS). The files are read at start and again whenever they
// change (cert-manager's Secret mounts, SPIRE's spiffe-helper), keeping the
// last good set when a change does not load.
type ServerTLS struct {
	// CertFile is the server's certificate chain (PEM), leaf first.
	CertFile WatchedFile `yaml:"certFile"`
	// KeyFile is CertFile's private key (PEM).
	KeyFile WatchedFile `yaml:"keyFile"`
	// ClientCAFile holds the roots (PEM) that verify client certificates
	// (cert-manager's ca.crt). A client with a SPIFFE id whose trust
	// domain has a bundle in SPIFFEBundles is verified by that bundle.
	ClientCAFile WatchedFile `yaml:"clientCAFile,omitempty"`
	// SPIFFEBundles are the X.509 trust bundles of SPIFFE trust domains,
	// each a PEM file (spiffe-helper's svid_bundle.pem) or a SPIFFE bundle
	// document (JSON).
	SPIFFEBundles []SPIFFEBundle `yaml:"spiffeBundles,omitempty"`
	// Allow are the callers every server admits unless Servers names its
	// own: spiffe://td/path (one id), spiffe://td/path/* (every id under
	// the path), spiffe://td/* (the trust domain), dns:name or
	// dns:*.suffix (a DNS SAN), or * (any verified certificate).
	Allow []Caller `yaml:"allow,omitempty"`
	// Servers replace Allow for one server.
	Servers TLSServers `yaml:"servers"`
}

// SPIFFEBundle is the trust bundle of one trust domain.
type SPIFFEBundle struct {
	// TrustDomain is the trust domain the bundle verifies (example.org).
	TrustDomain SPIFFETrustDomain `yaml:"trustDomain"`
	// File is the bundle: PEM certificates or a SPIFFE bundle (JSON).
	File WatchedFile `yaml:"file"`
}

// TLSServers are per-server allow lists.
type TLSServers struct {
	// Authz names who may call ext_authz.
	Authz *TLSServer `yaml:"authz,omitempty"`
	// ExtProc names who may call ext_proc.
	ExtProc *TLSServer `yaml:"extproc,omitempty"`
	// RateLimit names who may call the rate limit service (a caller can
	// spend any subject's quota through it).
	RateLimit *TLSServer `yaml:"ratelimit,omitempty"`
	// XDS names who may call ADS (a caller reads the whole mesh config).
	XDS *TLSServer `yaml:"xds,omitempty"`
	// Admin names who may read the admin server's sensitive pages.
	Admin *TLSServer `yaml:"admin,omitempty"`
}

// TLSServer is one server's allow list.
type TLSServer struct {
	// Allow are the callers the server admits (patterns as in
	// server.tls.allow).
	Allow []Caller `yaml:"allow"`
}

// ServerAdmin is the name Callers takes for the admin server.
const ServerAdmin = "admin"

// Callers returns the allow list of a server (a component name, or
// ServerAdmin).
func (t *ServerTLS) Callers(server string) []Caller {
	var s *TLSServer
	switch server {
	case ComponentAuthz:
		s = t.Servers.Authz
	case ComponentExtProc:
		s = t.Servers.ExtProc
	case ComponentRateLimit:
		s = t.Servers.RateLimit
	case ComponentXDS:
		s = t.Servers.XDS
	case ServerAdmin:
		s = t.Servers.Admin
	}
	if s != nil {
		return s.Allow
	}
	return t.Allow
}

// Files are every file the TLS settings read, for watching.
func (t *ServerTLS) Files() []string {
	out := []string{t.CertFile.String(), t.KeyFile.String()}
	if t.ClientCAFile != "" {
		out = append(out, t.ClientCAFile.String())
	}
	for _, b := range t.SPIFFEBundles {
		out = append(out, b.File.String())
	}
	return out
}

func (t *ServerTLS) validate(p Path, c *Config, errs *Errors) {
	if t.CertFile == "" {
		errs.Add(p.Field("certFile"), "is required: the server's certificate chain (PEM)")
	}
	if t.KeyFile == "" {
		errs.Add(p.Field("keyFile"), "is required: the private key of certFile (PEM)")
	}
	if t.ClientCAFile == "" && len(t.SPIFFEBundles) == 0 {
		errs.Add(p, "no trust roots for client certificates; set clientCAFile (PEM roots) or spiffeBundles")
	}
	seen := map[string]int{}
	for i, b := range t.SPIFFEBundles {
		bp := p.Field("spiffeBundles").Index(i)
		if b.TrustDomain.IsZero() {
			errs.Add(bp.Field("trustDomain"), "is required (example.org)")
		} else if first, dup := seen[b.TrustDomain.String()]; dup {
			errs.Add(bp.Field("trustDomain"), "%q already has a bundle (spiffeBundles[%d])", b.TrustDomain, first)
		} else {
			seen[b.TrustDomain.String()] = i
		}
		if b.File == "" {
			errs.Add(bp.Field("file"), "is required: the bundle (PEM or SPIFFE bundle JSON)")
		}
	}
	// Every served server must name its callers: an empty list would
	// admit nobody, and admitting everyone must be said ("*").
	servers := map[string]*TLSServer{
		ComponentAuthz: t.Servers.Authz, ComponentExtProc: t.Servers.ExtProc,
		ComponentRateLimit: t.Servers.RateLimit, ComponentXDS: t.Servers.XDS, ServerAdmin: t.Servers.Admin,
	}
	for name, s := range servers {
		if s != nil && len(s.Allow) == 0 {
			errs.Add(p.Field("servers").Field(name).Field("allow"), "is empty, which would admit no caller; list them, or \"*\" for any certificate the trust roots verify")
		}
	}
	for _, name := range []string{ComponentAuthz, ComponentExtProc, ComponentRateLimit, ComponentXDS} {
		if _, on := c.ComponentAddress(name); on && servers[name] == nil && len(t.Allow) == 0 {
			errs.Add(p.Field("allow"), "is empty and servers.%s sets no list: the %s server would admit no caller; list the callers (spiffe://example.org/ns/edge/sa/envoy), or \"*\" for any certificate the trust roots verify", name, name)
		}
	}
}

// CallerKind is what a Caller pattern matches.
type callerKind uint8

const (
	callerAny callerKind = iota + 1
	callerSPIFFE
	callerSPIFFEPrefix
	callerDNS
	callerDNSWildcard
)

// Caller is a pattern of a client certificate's identity, parsed once:
// "*", spiffe://td/path, spiffe://td/path/* (the ids under the path),
// spiffe://td/* (the trust domain), dns:name, dns:*.suffix.
type Caller struct {
	src  string
	kind callerKind
	id   spiffeid.ID
	td   spiffeid.TrustDomain
	// prefix is the path a callerSPIFFEPrefix id starts with, ending in
	// "/"; name is the DNS name, or the ".suffix" of a wildcard.
	prefix, name string
}

// ParseCaller checks and parses a caller pattern.
func ParseCaller(s string) (Caller, error) {
	c := Caller{src: s}
	switch {
	case s == "*":
		c.kind = callerAny
		return c, nil
	case strings.HasPrefix(s, "spiffe://"):
		if base, ok := strings.CutSuffix(s, "/*"); ok {
			td, path, _ := strings.Cut(strings.TrimPrefix(base, "spiffe://"), "/")
			t, err := spiffeid.TrustDomainFromString(td)
			if err != nil || (path != "" && spiffeid.ValidatePath("/"+path) != nil) {
				return Caller{}, fmt.Errorf("%q is not a SPIFFE id pattern (spiffe://example.org/path/*)", s)
			}
			c.kind, c.td, c.prefix = callerSPIFFEPrefix, t, "/"+path+"/"
			if path == "" {
				c.prefix = "/"
			}
			return c, nil
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			return Caller{}, fmt.Errorf("%q is not a SPIFFE id (spiffe://example.org/path): %v", s, err)
		}
		c.kind, c.id, c.td = callerSPIFFE, id, id.TrustDomain()
		return c, nil
	case strings.HasPrefix(s, "dns:"):
		name := strings.ToLower(strings.TrimPrefix(s, "dns:"))
		host := strings.TrimPrefix(name, "*.")
		if host == "" || strings.Contains(host, "*") || net.ParseIP(host) != nil || strings.ContainsAny(host, " /:") {
			return Caller{}, fmt.Errorf("%q is not a DNS name pattern (dns:envoy.example.org or dns:*.example.org)", s)
		}
		c.kind, c.name = callerDNS, name
		if strings.HasPrefix(name, "*.") {
			c.kind, c.name = callerDNSWildcard, name[1:]
		}
		return c, nil
	}
	return Caller{}, fmt.Errorf("%q is not a caller: use spiffe://example.org/path, spiffe://example.org/path/*, dns:name or *", s)
}

// MustCaller is ParseCaller for patterns known to parse.
func MustCaller(s string) Caller { return must(ParseCaller(s)) }

// String returns the pattern as written.
func (c Caller) String() string { return c.src }

func (c Caller) source() string { return c.src }

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Caller) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, c, "a caller (spiffe://example.org/path, spiffe://example.org/path/*, dns:name or *)", ParseCaller)
}

// MarshalYAML implements yaml.Marshaler.
func (c Caller) MarshalYAML() (any, error) { return c.src, nil }

// Match reports whether a verified certificate with SPIFFE id id (zero
// when it has none) and DNS SANs dnsNames is this caller. A wildcard DNS
// pattern matches one label, as in certificates.
func (c Caller) Match(id spiffeid.ID, dnsNames []string) bool {
	switch c.kind {
	case callerAny:
		return true
	case callerSPIFFE:
		return !id.IsZero() && id == c.id
	case callerSPIFFEPrefix:
		return !id.IsZero() && id.MemberOf(c.td) && (c.prefix == "/" || strings.HasPrefix(id.Path(), c.prefix) && len(id.Path()) > len(c.prefix))
	case callerDNS:
		return slices.ContainsFunc(dnsNames, func(n string) bool { return strings.EqualFold(n, c.name) })
	case callerDNSWildcard:
		return slices.ContainsFunc(dnsNames, func(n string) bool {
			n = strings.ToLower(n)
			head, ok := strings.CutSuffix(n, c.name)
			return ok && head != "" && !strings.Contains(head, ".")
		})
	}
	return false
}

// MatchAny reports whether any of callers matches.
func MatchAny(callers []Caller, id spiffeid.ID, dnsNames []string) bool {
	return slices.ContainsFunc(callers, func(c Caller) bool { return c.Match(id, dnsNames) })
}
