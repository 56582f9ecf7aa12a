package config

import (
	"math"
)

// ExtProc configures the ext_proc server (envoy.service.ext_proc.v3.ExternalProcessor).
type ExtProc struct {
	// Address is the gRPC listen address of the ext_proc server.
	Address string `yaml:"address" default:"127.0.0.1:9192"`
	// MessageTimeout bounds the work gatehouse does on one message of a
	// stream (a Redis round trip for idempotency keys, above all). Keep it
	// below the message_timeout of Envoy's ext_proc filter (200ms by
	// default): past Envoy's timeout the answer is useless, so gatehouse
	// gives up first and answers by the route's failure mode.
	MessageTimeout Duration `yaml:"messageTimeout" default:"150ms"`
	// MaxBodySize is the largest body a route's processors buffer and
	// inspect, unless the route sets its own. Envoy's per-connection
	// buffer limit must be at least as large.
	MaxBodySize ByteSize `yaml:"maxBodySize" default:"1MiB"`
	// Hygiene is the header policy of routes that turn hygiene on.
	Hygiene Hygiene `yaml:"hygiene"`
	// Idempotency holds the store settings of idempotency keys.
	Idempotency IdempotencyStore `yaml:"idempotency"`
}

// Hygiene is what header hygiene removes from requests and adds to or
// removes from responses.
type Hygiene struct {
	// InternalHeaders are request headers a client may never send, removed
	// on every hygiene route in addition to gatehouse's own identity
	// headers (x-gatehouse-*). A trailing '*' matches a prefix
	// ("x-internal-*").
	InternalHeaders []string `yaml:"internalHeaders,omitempty"`
	// SecurityHeaders are set on every response (overwriting what the
	// upstream sent, so that a policy cannot be weakened by one service).
	SecurityHeaders SecurityHeaders `yaml:"securityHeaders"`
	// StripServerHeaders removes the headers that identify upstream
	// software: server, x-powered-by, x-aspnet-version,
	// x-aspnetmvc-version, x-generator, x-runtime (by ext_proc) and
	// x-envoy-upstream-service-time (by Envoy's route, as Envoy does not
	// let ext_proc remove its own headers).
	StripServerHeaders bool `yaml:"stripServerHeaders" default:"true"`
	// StripResponseHeaders are further response headers to remove.
	StripResponseHeaders []string `yaml:"stripResponseHeaders,omitempty"`
}

// SecurityHeaders are the response headers hygiene sets. An empty value
// leaves the header alone.
type SecurityHeaders struct {
	// StrictTransportSecurity is the Strict-Transport-Security value:
	// browsers use HTTPS only for the host, for a year.
	StrictTransportSecurity string `yaml:"strictTransportSecurity" default:"max-age=31536000; includeSubDomains"`
	// ContentTypeOptions is the X-Content-Type-Options value: no MIME
	// sniffing of responses.
	ContentTypeOptions string `yaml:"contentTypeOptions" default:"nosniff"`
	// FrameOptions is the X-Frame-Options value: no framing (clickjacking).
	FrameOptions string `yaml:"frameOptions" default:"DENY"`
	// ReferrerPolicy is the Referrer-Policy value.
	ReferrerPolicy string `yaml:"referrerPolicy" default:"no-referrer"`
	// ContentSecurityPolicy is the Content-Security-Policy value; empty by
	// default, since a policy that suits a JSON API breaks HTML pages.
	ContentSecurityPolicy string `yaml:"contentSecurityPolicy,omitempty"`
	// Extra are further headers to set, name → value.
	Extra map[string]string `yaml:"extra,omitempty"`
}

// IdempotencyStore configures where idempotency records live: Redis when
// the config has a redis: section (shared by every replica), otherwise an
// in-process map.
type IdempotencyStore struct {
	// MemoryMaxKeys bounds the in-process store; when full, new keys are
	// treated as a store failure (the route's failure mode decides).
	MemoryMaxKeys int `yaml:"memoryMaxKeys" default:"100000"`
}

// LargeBodyAction is what a route does with a body larger than its limit.
type LargeBodyAction string

// Large body actions.
const (
	// LargeBodySkip lets the body through without running the body
	// processors on it, and counts it.
	LargeBodySkip LargeBodyAction = "skip"
	// LargeBodyReject refuses it: 413 for a request, 502 for a response.
	LargeBodyReject LargeBodyAction = "reject"
)

// EnumValues implements Enum.
func (LargeBodyAction) EnumValues() []string { return []string{"skip", "reject"} }

// EnumNoun implements Enum.
func (LargeBodyAction) EnumNoun() string { return "a large body action" }

// RouteExtProc selects the processors a route runs. They run in a fixed
// order: hygiene, openapi, idempotency on the request; openapi (report
// only), redact, idempotency, hygiene on the response.
type RouteExtProc struct {
	// Hygiene strips client-sent identity and internal headers, ensures
	// x-request-id and traceparent, and sets security response headers.
	Hygiene *RouteHygiene `yaml:"hygiene,omitempty"`
	// OpenAPI validates requests (and, report-only, responses) against an
	// OpenAPI 3 document.
	OpenAPI *RouteOpenAPI `yaml:"openapi,omitempty"`
	// Redact masks secrets and personal data in JSON response bodies.
	Redact *RouteRedact `yaml:"redact,omitempty"`
	// Idempotency replays the first response to retries that carry the
	// same Idempotency-Key (Stripe's semantics).
	Idempotency *RouteIdempotency `yaml:"idempotency,omitempty"`
	// JSON is how strictly the route reads JSON bodies: request bodies
	// that openapi validates and response bodies that redact masks.
	JSON RouteJSON `yaml:"json"`
	// MaxBodySize overrides extproc.maxBodySize for this route.
	MaxBodySize ByteSize `yaml:"maxBodySize,omitempty"`
	// OnLargeBody decides what happens to a body over the limit on a route
	// whose processors need bodies.
	OnLargeBody LargeBodyAction `yaml:"onLargeBody" default:"reject"`
}

// RouteJSON says which departures from strict JSON a route's bodies may
// take. Each is refused by default because readers disagree on it, and a
// validator or a redactor that reads a body differently from the upstream
// or the client checks a body nobody else sees: relax one only for legacy
// clients that send it.
type RouteJSON struct {
	// TrailingData is data after the JSON text (RFC 8259 §2 allows one
	// text). reject: a request is refused (400), a response on a redaction
	// route too (502). allow: a request is validated on its first text, as
	// a streaming decoder reads it; a response is masked text by text.
	TrailingData JSONRule `yaml:"trailingData" default:"reject"`
	// DuplicateNames is an object naming a member twice (I-JSON, RFC 7493
	// §2.3): the validator reads the last, many upstreams the first.
	// reject: refused as above. allow: a request is validated on the last
	// value; a response has every such member masked as the paths say.
	DuplicateNames JSONRule `yaml:"duplicateNames" default:"reject"`
	// InvalidUTF8 is a string holding bytes that are not UTF-8 (RFC 8259
	// §8.1): the validator reads each as U+FFFD, the upstream the bytes.
	// reject: a validated request is refused (400). allow: validated as
	// the validator reads it. Redaction masks strings as decoded either way.
	InvalidUTF8 JSONRule `yaml:"invalidUTF8" default:"reject"`
}

// JSONRule is what a route does with one departure from strict JSON.
type JSONRule string

// JSON rules.
const (
	JSONReject JSONRule = "reject"
	JSONAllow  JSONRule = "allow"
)

// EnumValues implements Enum.
func (JSONRule) EnumValues() []string { return []string{"reject", "allow"} }

// EnumNoun implements Enum.
func (JSONRule) EnumNoun() string { return "a JSON rule" }

// RouteHygiene turns header hygiene on for a route.
type RouteHygiene struct {
	// InternalHeaders adds route-specific headers to extproc.hygiene's.
	InternalHeaders []string `yaml:"internalHeaders,omitempty"`
}

// RouteOpenAPI is a route's API contract. Exactly one of Spec and File.
type RouteOpenAPI struct {
	// Spec is the OpenAPI 3 document itself (YAML or JSON), written inline
	// as a block string.
	Spec string `yaml:"spec,omitempty"`
	// File is the path of the document (YAML or JSON).
	File FilePath `yaml:"file,omitempty"`
	// BasePath is prefixed to every path of the document. When empty, the
	// paths of the document's servers are used (hosts are ignored: Envoy
	// has already matched the host).
	BasePath string `yaml:"basePath,omitempty"`
	// RequestBody validates JSON request bodies, which makes Envoy buffer
	// them; false checks path, query and headers only.
	RequestBody bool `yaml:"requestBody" default:"true"`
	// ValidateResponses checks responses too, report-only: violations are
	// logged and counted, never blocked.
	ValidateResponses bool `yaml:"validateResponses" default:"false"`
	// CheckFormats checks the string formats email, uuid, uri, hostname,
	// ipv4, ipv6, date, date-time and byte; false turns every format check
	// of this document off (the schema's other rules still apply).
	CheckFormats bool `yaml:"checkFormats" default:"true"`
}

// RouteRedact masks values in JSON response bodies.
type RouteRedact struct {
	// Paths are JSONPath expressions whose values are replaced by Mask:
	// $.a.b, $.a[*].b, $.a[0], $['a-b'], $..name (at any depth), $.a.*.
	Paths []string `yaml:"paths,omitempty"`
	// Detectors find secrets in any string value.
	Detectors RedactDetectors `yaml:"detectors"`
	// NationalIDPatterns are further RE2 patterns of national id numbers,
	// masked wherever they occur in a string.
	NationalIDPatterns []Pattern `yaml:"nationalIdPatterns,omitempty"`
	// Mask replaces values selected by Paths.
	Mask string `yaml:"mask" default:"[REDACTED]"`
}

// RedactDetectors switches the built-in detectors.
type RedactDetectors struct {
	// Email masks e-mail addresses.
	Email bool `yaml:"email" default:"true"`
	// Cards masks payment card numbers (13-19 digits passing Luhn), keeping
	// the last four digits.
	Cards bool `yaml:"cards" default:"true"`
	// NationalIDs masks US social security numbers (AAA-GG-SSSS).
	NationalIDs bool `yaml:"nationalIds" default:"true"`
	// BearerTokens masks "Bearer <token>" values and JWTs.
	BearerTokens bool `yaml:"bearerTokens" default:"true"`
}

// RouteIdempotency makes unsafe requests carrying an idempotency key safe
// to retry.
type RouteIdempotency struct {
	// Header carries the client's key.
	Header string `yaml:"header" default:"idempotency-key"`
	// Methods the key applies to; empty means POST and PATCH.
	Methods []string `yaml:"methods,omitempty"`
	// Required refuses (400) a request of those methods without a key.
	Required bool `yaml:"required" default:"false"`
	// TTL is how long a completed response is replayed.
	TTL Duration `yaml:"ttl" default:"24h"`
	// LockTimeout is how long a request in flight holds its key: after it,
	// a retry may run again (the first request is assumed lost). Make it
	// longer than the route's upstream timeout.
	LockTimeout Duration `yaml:"lockTimeout" default:"1m"`
	// ScopeHeaders are request headers whose values (hashed, never stored)
	// scope keys, in addition to the headers ext_authz reads credentials
	// from (authorization, JWT token headers and cookie, the API key
	// header), which always do: two callers using the same key never see
	// each other's responses. Add x-forwarded-client-cert on routes whose
	// callers are identified by mTLS alone.
	ScopeHeaders []string `yaml:"scopeHeaders,omitempty"`
	// FailureMode decides what happens when the store cannot be reached in
	// time: open lets the request through without idempotency, closed
	// answers 503.
	FailureMode FailureMode `yaml:"failureMode" default:"closed"`
}

// DefaultIdempotentMethods are the methods idempotency keys apply to when
// a route names none.
var DefaultIdempotentMethods = []string{"POST", "PATCH"}

// HasProcessors reports whether the route turns on at least one processor.
func (e *RouteExtProc) HasProcessors() bool {
	return e != nil && (e.Hygiene != nil || e.OpenAPI != nil || e.Redact != nil || e.Idempotency != nil)
}

// BodyLimit is the route's effective body limit in bytes.
func (e *RouteExtProc) BodyLimit(c *Config) int64 {
	if e != nil && e.MaxBodySize > 0 {
		return int64(e.MaxBodySize)
	}
	if c.ExtProc != nil {
		return int64(c.ExtProc.MaxBodySize)
	}
	return 1 << 20
}

// IdempotentMethods returns the methods keys apply to.
func (i *RouteIdempotency) IdempotentMethods() []string {
	if len(i.Methods) == 0 {
		return DefaultIdempotentMethods
	}
	return i.Methods
}

// EnvoyServerHeaders are the server headers stripServerHeaders removes
// that ext_proc may not touch: Envoy adds them itself, and the route
// removes them (response_headers_to_remove) on hygiene routes.
var EnvoyServerHeaders = []string{"x-envoy-upstream-service-time"}

// ExtProcNeeds says which parts of the exchange Envoy sends to ext_proc
// for route r: only what its processors use. A route with no processor
// (or without the extproc component) is Disabled; a header-only route
// never buffers a body.
func (r *Route) ExtProcNeeds(c *Config) ExtProcNeeds {
	e := r.ExtProc
	off := ExtProcNeeds{Disabled: true, RequestBody: BodyNone, ResponseBody: BodyNone}
	if c.ExtProc == nil || !e.HasProcessors() {
		return off
	}
	// Whole bodies with reject: Envoy refuses what exceeds its buffer
	// itself. With skip, BUFFERED_PARTIAL lets Envoy send what fits and
	// tell us (end_of_stream false) that the rest went by unprocessed.
	buffered := BodyBuffered
	if e.OnLargeBody == LargeBodySkip {
		buffered = BodyBufferedPartial
	}
	n := ExtProcNeeds{RequestHeaders: true, RequestBody: BodyNone, ResponseBody: BodyNone}
	if e.Hygiene != nil {
		n.ResponseHeaders = true // security headers, echoed correlation ids
		if c.ExtProc.Hygiene.StripServerHeaders {
			n.ResponseHeadersToRemove = EnvoyServerHeaders
		}
	}
	if (e.OpenAPI != nil && e.OpenAPI.RequestBody) || e.Idempotency != nil {
		n.RequestBody = buffered
	}
	// Report-only response validation and idempotency records never block
	// a response for its size (they skip what is too large), so they take
	// what fits; only redaction can refuse a response it cannot inspect.
	if (e.OpenAPI != nil && e.OpenAPI.ValidateResponses) || e.Idempotency != nil {
		n.ResponseHeaders = true
		n.ResponseBody = BodyBufferedPartial
	}
	if e.Redact != nil {
		n.ResponseHeaders = true
		n.ResponseBody = buffered
	}
	if n.RequestBody != BodyNone || n.ResponseBody != BodyNone {
		limit := c.ExtProc.MaxBodySize
		if e.MaxBodySize > 0 {
			limit = e.MaxBodySize
		}
		n.MaxBodyBytes = uint32(min(int64(limit), math.MaxUint32))
	}
	return n
}
