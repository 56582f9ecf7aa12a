package config

import (
	"net"
	"strings"
)

// validateServing checks what concerns how gatehouse's own servers are
// reached: TLS, the admin server's sensitive pages, the drain, the
// resource limits, and the TLS Envoy speaks to the services.
func (c *Config) validateServing(errs *Errors) {
	s := &c.Server
	p := Path("server")
	if t := s.TLS; t != nil {
		t.validate(p.Field("tls"), c, errs)
	}
	a := p.Field("admin")
	if s.Admin.SensitiveAddress != "" {
		if msg := checkHostPort(s.Admin.SensitiveAddress, true); msg != "" {
			errs.Add(a.Field("sensitiveAddress"), "%q %s", s.Admin.SensitiveAddress, msg)
		} else if s.Admin.SensitiveAddress == s.Admin.Address {
			errs.Add(a.Field("sensitiveAddress"), "%q is also server.admin.address; use a port of its own", s.Admin.SensitiveAddress)
		} else if s.TLS == nil && !loopback(s.Admin.SensitiveAddress) && !s.Admin.InsecureSensitive {
			errs.Add(a.Field("sensitiveAddress"), "%q is reachable beyond this host and would serve /config, /xds/resources and POST /authz/jwks/refresh in plaintext to anyone; bind it to loopback (127.0.0.1:9195; kubectl port-forward reaches it), configure server.tls, or set server.admin.insecureSensitive: true for a network you restrict otherwise", s.Admin.SensitiveAddress)
		}
	} else if checkHostPort(s.Admin.Address, true) == "" && !loopback(s.Admin.Address) && !s.Admin.InsecureSensitive {
		errs.Add(a.Field("address"), "%q is reachable beyond this host and would serve /config, /xds/resources and POST /authz/jwks/refresh in plaintext to anyone; set server.admin.sensitiveAddress to a loopback address (127.0.0.1:9195; kubectl port-forward reaches it) or, with server.tls, to an address served over mTLS, or set server.admin.insecureSensitive: true for a network you restrict otherwise", s.Admin.Address)
	}
	if s.DrainDelay.D() < 0 {
		errs.Add(p.Field("drainDelay"), "must be 0s or more")
	}
	if s.CloseTimeout.D() <= 0 {
		errs.Add(p.Field("closeTimeout"), "must be more than 0s")
	}
	if s.MemoryLimit < 0 || (s.MemoryLimit > 0 && s.MemoryLimit < 32<<20) {
		errs.Add(p.Field("memoryLimit"), "%s is too small; use 0 (derive it from the cgroup) or at least 32MiB", s.MemoryLimit)
	}
	g := p.Field("grpc")
	if s.GRPC.MaxInflightBytes < s.GRPC.MaxRecvMessageSize {
		errs.Add(g.Field("maxInflightBytes"), "%s is less than server.grpc.maxRecvMessageSize (%s): a request of the largest size could never be admitted", s.GRPC.MaxInflightBytes, s.GRPC.MaxRecvMessageSize)
	}

	if c.XDS == nil {
		return
	}
	sp := Path("xds").Field("services")
	svc := &c.XDS.Services
	if svc.HealthCheckInterval.D() < 0 {
		errs.Add(sp.Field("healthCheckInterval"), "must be 0s (off) or more")
	}
	served := c.Authz != nil || c.ExtProc != nil || c.RateLimit != nil
	switch {
	case s.TLS != nil && svc.TLS == nil && served:
		errs.Add(sp.Field("tls"), "is required with server.tls: gatehouse's services speak TLS, so Envoy must too; set the SDS secrets of Envoy's client certificate and trust roots (see envoy/bootstrap-tls.yaml)")
	case s.TLS == nil && svc.TLS != nil:
		errs.Warn(sp.Field("tls"), "is set but server.tls is not: Envoy speaks TLS to services that serve plaintext, which works only behind a proxy that terminates TLS")
	}
	if t := svc.TLS; t != nil {
		tp := sp.Field("tls")
		if t.SNI == "" && len(t.ServerIdentities) == 0 {
			errs.Add(tp, "set sni or serverIdentities: without a name to verify, Envoy would accept any certificate its roots verify, an Envoy's own included")
		}
		for i, id := range t.ServerIdentities {
			if id.kind == callerAny {
				errs.Add(tp.Field("serverIdentities").Index(i), "\"*\" verifies no identity; name gatehouse's (spiffe://example.org/ns/gatehouse/sa/gatehouse or dns:gatehouse.example.org)")
			}
		}
		t.Certificate.validate(tp.Field("certificate"), errs)
		t.Validation.validate(tp.Field("validation"), errs)
	}
}

func (s SDSSecret) validate(p Path, errs *Errors) {
	if s.Name == "" {
		errs.Add(p.Field("name"), "is required: the name of the secret Envoy fetches")
	}
	if (s.Path == "") == (s.Cluster == "") {
		errs.Add(p, "set exactly one of path (a file on Envoy's host that Envoy watches) and cluster (a static SDS cluster of Envoy's bootstrap)")
	}
}

// loopback reports whether a listen address is reachable from this host
// only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// SAN returns how Envoy matches this pattern against a certificate's
// subject alternative names: uri (else dns), the value, and whether the
// value is a prefix (uri) or suffix (dns) rather than exact. ok is false
// for "*".
func (c Caller) SAN() (uri bool, value string, partial bool, ok bool) {
	switch c.kind {
	case callerSPIFFE:
		return true, c.id.String(), false, true
	case callerSPIFFEPrefix:
		return true, "spiffe://" + c.td.Name() + c.prefix, true, true
	case callerDNS:
		return false, c.name, false, true
	case callerDNSWildcard:
		return false, c.name, true, true
	}
	return false, "", false, false
}
