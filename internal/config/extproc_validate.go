package config

import (
	"regexp"
	"strings"
	"time"
)

var headerNamePattern = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9a-z-]+$")

func checkHeaderNames(p Path, names []string, wildcard bool, errs *Errors) {
	for i, h := range names {
		n := h
		if wildcard {
			n = strings.TrimSuffix(n, "*")
		}
		switch {
		case !headerNamePattern.MatchString(n):
			errs.Add(p.Index(i), "%q is not a lower-case header name", h)
		case EnvoyOwnedHeader(n):
			errs.Add(p.Index(i), "%q is a header Envoy does not let ext_proc change (x-envoy-* and host); remove it with routes[].requestHeaders.remove or responseHeaders.remove", h)
		}
	}
}

// EnvoyOwnedHeader reports whether Envoy refuses ext_proc mutations of a
// header (or of every header of a prefix): its own x-envoy-* headers and
// the host. Envoy counts such a mutation in
// ext_proc.rejected_header_mutations and drops it.
func EnvoyOwnedHeader(n string) bool {
	return n == "host" || strings.HasPrefix(n, "x-envoy-")
}

func (e *ExtProc) validate(p Path, c *Config, errs *Errors) {
	if e.MessageTimeout.D() < time.Millisecond {
		errs.Add(p.Field("messageTimeout"), "%s is too short; use at least 1ms", e.MessageTimeout)
	}
	if e.MaxBodySize < 1 {
		errs.Add(p.Field("maxBodySize"), "must be more than 0")
	}
	if m := c.Server.GRPC.MaxRecvMessageSize; e.MaxBodySize > m {
		errs.Add(p.Field("maxBodySize"), "%s is larger than server.grpc.maxRecvMessageSize (%s): Envoy could not send such a body", e.MaxBodySize, m)
	}
	h := p.Field("hygiene")
	checkHeaderNames(h.Field("internalHeaders"), e.Hygiene.InternalHeaders, true, errs)
	checkHeaderNames(h.Field("stripResponseHeaders"), e.Hygiene.StripResponseHeaders, false, errs)
	for k, v := range e.Hygiene.SecurityHeaders.Extra {
		kp := h.Field("securityHeaders").Field("extra").Key(k)
		switch {
		case !headerNamePattern.MatchString(k):
			errs.Add(kp, "%q is not a lower-case header name", k)
		case EnvoyOwnedHeader(k):
			errs.Add(kp, "%q is a header Envoy does not let ext_proc change (x-envoy-* and host)", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			errs.Add(kp, "value holds a line break or NUL")
		}
	}
	if e.Idempotency.MemoryMaxKeys < 1 {
		errs.Add(p.Field("idempotency").Field("memoryMaxKeys"), "must be at least 1")
	}
}

func (e *RouteExtProc) validate(p Path, c *Config, errs *Errors) {
	if c.ExtProc == nil && e.HasProcessors() {
		errs.Add(p, "the route turns on ext_proc processors but the config has no top-level extproc: section, so they would never run")
	}
	if !e.HasProcessors() {
		errs.Warn(p, "no processor is turned on (hygiene, openapi, redact, idempotency); ext_proc is off for this route")
	}
	if e.MaxBodySize < 0 {
		errs.Add(p.Field("maxBodySize"), "must be 0 (extproc.maxBodySize) or more")
	}
	if c.ExtProc != nil && int64(e.MaxBodySize) > int64(c.Server.GRPC.MaxRecvMessageSize) {
		errs.Add(p.Field("maxBodySize"), "%s is larger than server.grpc.maxRecvMessageSize (%s): Envoy could not send such a body", e.MaxBodySize, c.Server.GRPC.MaxRecvMessageSize)
	}
	if h := e.Hygiene; h != nil {
		checkHeaderNames(p.Field("hygiene").Field("internalHeaders"), h.InternalHeaders, true, errs)
	}
	if o := e.OpenAPI; o != nil {
		op := p.Field("openapi")
		switch {
		case o.Spec == "" && o.File == "":
			errs.Add(op, "set spec (the document inline) or file (its path)")
		case o.Spec != "" && o.File != "":
			errs.Add(op, "set only one of spec and file")
		}
		if o.BasePath != "" && (!strings.HasPrefix(o.BasePath, "/") || strings.ContainsAny(o.BasePath, "?#")) {
			errs.Add(op.Field("basePath"), "%q must start with / and hold no query or fragment", o.BasePath)
		}
	}
	if (e.JSON.TrailingData == JSONAllow || e.JSON.DuplicateNames == JSONAllow || e.JSON.InvalidUTF8 == JSONAllow) &&
		(e.OpenAPI == nil || !e.OpenAPI.RequestBody) && e.Redact == nil {
		errs.Warn(p.Field("json"), "relaxes JSON rules on a route that reads no JSON body (no openapi with requestBody, no redact): it has no effect")
	}
	if r := e.Redact; r != nil {
		rp := p.Field("redact")
		for i, s := range r.Paths {
			if !strings.HasPrefix(s, "$") {
				errs.Add(rp.Field("paths").Index(i), "%q is not a JSONPath; start it with $, e.g. $.user.email", s)
			}
		}
		if len(r.Paths) == 0 && len(r.NationalIDPatterns) == 0 && !r.Detectors.Email && !r.Detectors.Cards && !r.Detectors.NationalIDs && !r.Detectors.BearerTokens {
			errs.Add(rp, "masks nothing: give paths, nationalIdPatterns or keep a detector on")
		}
	}
	if id := e.Idempotency; id != nil {
		ip := p.Field("idempotency")
		if !headerNamePattern.MatchString(id.Header) {
			errs.Add(ip.Field("header"), "%q is not a lower-case header name", id.Header)
		}
		for i, m := range id.Methods {
			switch {
			case !httpToken.MatchString(m) || strings.ToUpper(m) != m:
				errs.Add(ip.Field("methods").Index(i), "%q is not an HTTP method; write it upper-case, e.g. POST", m)
			case m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE":
				errs.Add(ip.Field("methods").Index(i), "%s is a safe method; idempotency keys are for unsafe ones (POST, PATCH, PUT, DELETE)", m)
			}
		}
		checkHeaderNames(ip.Field("scopeHeaders"), id.ScopeHeaders, false, errs)
		if id.TTL.D() < time.Second {
			errs.Add(ip.Field("ttl"), "%s is too short; use at least 1s", id.TTL)
		}
		if id.LockTimeout.D() < time.Second {
			errs.Add(ip.Field("lockTimeout"), "%s is too short; use at least 1s", id.LockTimeout)
		}
		if id.LockTimeout.D() > id.TTL.D() {
			errs.Add(ip.Field("lockTimeout"), "%s is longer than ttl (%s)", id.LockTimeout, id.TTL)
		}
	}
}
