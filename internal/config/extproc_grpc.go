package config

import "strings"

// ServedToGRPC reports whether a grpc listener (proxyless gRPC clients)
// serves r.
func (r *Route) ServedToGRPC(c *Config) bool {
	for i := range c.Listeners {
		if l := &c.Listeners[i]; l.Kind == ListenerGRPC && r.ServedBy(l) {
			return true
		}
	}
	return false
}

// ExtProcForGRPC reports whether some route served by grpc listener l
// runs ext_proc processors: xds then pushes the ext_proc filter on l.
func (c *Config) ExtProcForGRPC(l *Listener) bool {
	if c.ExtProc == nil || l.Kind != ListenerGRPC {
		return false
	}
	for i := range c.Routes {
		if r := &c.Routes[i]; r.ServedBy(l) && r.ExtProc.HasProcessors() {
			return true
		}
	}
	return false
}

// validateGRPC refuses what a proxyless gRPC client's ext_proc filter
// (gRPC-Go, gRFC A93) cannot do for a route served to gRPC clients, so
// that no processor is silently dropped: it sends no body but in the
// GRPC body mode (protobuf messages, not the JSON the body processors
// read), cannot answer an RPC with a stored HTTP response, and refuses
// mutations of grpc-* headers (failing the RPC).
func (e *RouteExtProc) validateGRPC(p Path, r *Route, c *Config, errs *Errors) {
	if !e.HasProcessors() || !r.ServedToGRPC(c) {
		return
	}
	const why = "proxyless gRPC clients (a grpc listener serves this route)"
	if e.OpenAPI != nil {
		errs.Add(p.Field("openapi"), "cannot apply to %s: their RPCs carry protobuf messages, not the HTTP/JSON an OpenAPI document describes; use hygiene only on gRPC routes", why)
	}
	if e.Redact != nil {
		errs.Add(p.Field("redact"), "cannot apply to %s: their ext_proc filter sends no JSON bodies to redact; use hygiene only on gRPC routes", why)
	}
	if e.Idempotency != nil {
		errs.Add(p.Field("idempotency"), "cannot apply to %s: a replay is a stored HTTP response, which a gRPC client's ext_proc filter cannot deliver (it ends an RPC with a status only); use hygiene only on gRPC routes", why)
	}
	if e.MaxBodySize != 0 {
		errs.Add(p.Field("maxBodySize"), "cannot apply to %s: they send gatehouse no bodies", why)
	}
	if e.OnLargeBody == LargeBodySkip {
		errs.Add(p.Field("onLargeBody"), "cannot apply to %s: they send gatehouse no bodies", why)
	}
	if h := e.Hygiene; h != nil {
		for i, n := range h.InternalHeaders {
			if grpcReserved(n) {
				errs.Add(p.Field("hygiene").Field("internalHeaders").Index(i), "%q is in gRPC's reserved grpc-* space: a gRPC client fails the RPC rather than let ext_proc remove it", n)
			}
		}
	}
	// What the component (and the server) sets is reported once, at the
	// first route it concerns.
	if r != firstGRPCExtProcRoute(c) {
		return
	}
	hygiene := false
	for i := range c.Routes {
		if o := &c.Routes[i]; o.ExtProc != nil && o.ExtProc.Hygiene != nil && o.ServedToGRPC(c) {
			hygiene = true
		}
	}
	if c.ExtProc != nil && hygiene {
		// Component-wide hygiene settings reach gRPC routes with hygiene.
		h := c.ExtProc.Hygiene
		hp := Path("extproc").Field("hygiene")
		for i, n := range h.StripResponseHeaders {
			if grpcReserved(n) {
				errs.Add(hp.Field("stripResponseHeaders").Index(i), "%q is in gRPC's reserved grpc-* space, and route %q serves proxyless gRPC clients, which fail the RPC rather than let ext_proc remove it", n, r.ID)
			}
		}
		for k := range h.SecurityHeaders.Extra {
			if grpcReserved(k) {
				errs.Add(hp.Field("securityHeaders").Field("extra").Key(k), "%q is in gRPC's reserved grpc-* space, and route %q serves proxyless gRPC clients, which fail the RPC rather than let ext_proc set it", k, r.ID)
			}
		}
	}
	if c.Server.TLS != nil {
		if c.XDS == nil || c.XDS.Services.TLS == nil || c.XDS.Services.TLS.GRPCCertificateProviders == nil {
			errs.Add(p, "%s must speak mTLS to ext_proc (server.tls is set): set xds.services.tls.grpcCertificateProviders to the certificate provider instances of their bootstrap", why)
		}
	}
	if c.XDS != nil && c.XDS.Services.TLS != nil {
		if g := c.XDS.Services.TLS.GRPCCertificateProviders; g != nil {
			gp := Path("xds").Field("services").Field("tls").Field("grpcCertificateProviders")
			if g.Identity == "" {
				errs.Add(gp.Field("identity"), "is required: the instance of the certificate gRPC clients present to gatehouse")
			}
			if g.Roots == "" {
				errs.Add(gp.Field("roots"), "is required: the instance of the roots gRPC clients verify gatehouse with")
			}
		}
	}
	if addrs, _ := c.ServiceAddresses(ComponentExtProc); len(addrs) > 1 {
		errs.Add(Path("xds").Field("services").Field("extproc"), "lists %d addresses, but proxyless gRPC clients (route %q) dial one target: give one address, a DNS name that resolves to every replica", len(addrs), r.ID)
	}
}

// firstGRPCExtProcRoute is the first route served to gRPC clients that
// runs processors.
func firstGRPCExtProcRoute(c *Config) *Route {
	for i := range c.Routes {
		if r := &c.Routes[i]; r.ExtProc.HasProcessors() && r.ServedToGRPC(c) {
			return r
		}
	}
	return nil
}

// grpcReserved reports whether a header name (or a "prefix*" pattern) is
// in gRPC's reserved space.
func grpcReserved(n string) bool {
	n = strings.ToLower(n)
	return strings.HasPrefix(n, "grpc-") || n == "grpc*"
}
