// Package hygiene is gatehouse's header policy for a route: client-sent
// copies of identity and internal headers are removed, every request
// carries a well-formed x-request-id and W3C traceparent (generated when
// missing or malformed) that are echoed on the response, and responses get
// the configured security headers and lose the ones that identify upstream
// software.
package hygiene

import (
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Header is one header, name lower-case as Envoy sends it.
type Header struct {
	Name, Value string
}

// Correlation and tracing headers.
const (
	RequestIDHeader   = "x-request-id"
	TraceparentHeader = "traceparent"
	TracestateHeader  = "tracestate"
)

// ServerHeaders identify upstream software and are stripped when
// stripServerHeaders is on. Envoy's own x-envoy-upstream-service-time
// (which leaks timing) is not among them: Envoy refuses its removal by
// ext_proc, so the route removes it (config.EnvoyServerHeaders).
var ServerHeaders = []string{
	"server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version",
	"x-generator", "x-runtime",
}

// Policy is a route's compiled header policy. It is immutable.
type Policy struct {
	internal map[string]bool
	prefixes []string // "x-gatehouse-" and configured "x-foo-*" prefixes
	security []Header
	strip    map[string]bool
}

// New compiles the component's hygiene settings with a route's additions.
func New(h config.Hygiene, r *config.RouteHygiene) *Policy {
	p := &Policy{internal: map[string]bool{}, strip: map[string]bool{}}
	// Every x-gatehouse-* header, not only today's identity headers:
	// a header added to the contract later is protected from the start.
	p.prefixes = append(p.prefixes, contract.IdentityHeaderPrefix)
	for _, n := range contract.IdentityHeaders {
		p.internal[n] = true
	}
	names := slices.Clone(h.InternalHeaders)
	if r != nil {
		names = append(names, r.InternalHeaders...)
	}
	for _, n := range names {
		n = strings.ToLower(n)
		if pre, ok := strings.CutSuffix(n, "*"); ok {
			p.prefixes = append(p.prefixes, pre)
		} else {
			p.internal[n] = true
		}
	}
	s := h.SecurityHeaders
	for _, kv := range []Header{
		{"strict-transport-security", s.StrictTransportSecurity},
		{"x-content-type-options", s.ContentTypeOptions},
		{"x-frame-options", s.FrameOptions},
		{"referrer-policy", s.ReferrerPolicy},
		{"content-security-policy", s.ContentSecurityPolicy},
	} {
		if kv.Value != "" {
			p.security = append(p.security, kv)
		}
	}
	extra := make([]string, 0, len(s.Extra))
	for k := range s.Extra {
		extra = append(extra, k)
	}
	slices.Sort(extra)
	for _, k := range extra {
		p.security = append(p.security, Header{strings.ToLower(k), s.Extra[k]})
	}
	if h.StripServerHeaders {
		for _, n := range ServerHeaders {
			p.strip[n] = true
		}
	}
	for _, n := range h.StripResponseHeaders {
		p.strip[strings.ToLower(n)] = true
	}
	return p
}

// IsInternal reports whether a client may not send header name. Envoy's
// own headers never are: Envoy refuses their removal by ext_proc (and
// strips the ones it trusts from external clients itself).
func (p *Policy) IsInternal(name string) bool {
	if p.internal[name] {
		return true
	}
	if config.EnvoyOwnedHeader(name) {
		return false
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

// RequestResult is what hygiene does to a request.
type RequestResult struct {
	// Remove are client-sent headers to strip.
	Remove []string
	// Set are headers to set (overwriting): a generated x-request-id or
	// traceparent.
	Set []Header
	// RequestID and Traceparent are the values the request carries on.
	RequestID, Traceparent string
	// TraceValid reports whether the client's traceparent was kept, so the
	// caller can join that trace rather than start one.
	TraceValid bool
}

// Request applies the policy to request headers hs. newTraceparent makes
// the traceparent of a request that has none (or a malformed one); the
// caller passes one that starts its own span when tracing is on, and
// NewTraceparent otherwise.
func (p *Policy) Request(hs []Header, newTraceparent func() string) RequestResult {
	var res RequestResult
	haveState := false
	ids, parents := 0, 0
	for _, h := range hs {
		switch {
		case h.Name == RequestIDHeader:
			ids++
			if res.RequestID == "" && ValidRequestID(h.Value) {
				res.RequestID = h.Value
			}
		case h.Name == TraceparentHeader:
			parents++
			if res.Traceparent == "" {
				res.Traceparent = h.Value
			}
		case h.Name == TracestateHeader:
			haveState = true
		case p.IsInternal(h.Name):
			if !slices.Contains(res.Remove, h.Name) {
				res.Remove = append(res.Remove, h.Name)
			}
		}
	}
	// Set (overwriting every copy) unless the request carries exactly the
	// one id it goes on with: a second, unchecked copy must not reach the
	// upstream's logs.
	if res.RequestID == "" {
		res.RequestID = NewRequestID()
		res.Set = append(res.Set, Header{RequestIDHeader, res.RequestID})
	} else if ids > 1 {
		res.Set = append(res.Set, Header{RequestIDHeader, res.RequestID})
	}
	// Two traceparents name two parents: which one an upstream tracer
	// reads is anyone's guess, so the trace restarts, as for one that
	// cannot be parsed.
	res.TraceValid = parents == 1 && ValidTraceparent(res.Traceparent)
	if !res.TraceValid {
		// A tracestate belongs to the traceparent it came with; with that
		// one gone it must go too (W3C Trace Context §3.3).
		if haveState {
			res.Remove = append(res.Remove, TracestateHeader)
		}
		res.Traceparent = newTraceparent()
		res.Set = append(res.Set, Header{TraceparentHeader, res.Traceparent})
	}
	return res
}

// SecurityHeaders are the headers set on every response of the route,
// immediate responses (400, 409, replays) included, besides the
// correlation ids; callers may pre-build their wire form once.
func (p *Policy) SecurityHeaders() []Header { return p.security }

// Strips reports whether the policy removes response header name.
func (p *Policy) Strips(name string) bool { return p.strip[name] }

// ValidRequestID accepts 1-128 characters of [A-Za-z0-9._:+/=-]: UUIDs and
// the ids other proxies make, but nothing that could forge log lines or
// carry markup.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == ':' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// NewRequestID returns a random version-4 UUID, the form Envoy generates.
// The ids only correlate; they are not secrets, so math/rand/v2's
// per-thread ChaCha8 is random enough and far cheaper than crypto/rand.
func NewRequestID() string {
	var b [16]byte
	putU64(b[:8], rand.Uint64())
	putU64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// NewTraceparent returns a version-00 traceparent with random trace and
// parent ids, not sampled: gatehouse starts the trace but does not decide
// for the tracers downstream that it must be recorded.
func NewTraceparent() string {
	var tid [16]byte
	var sid [8]byte
	for {
		putU64(tid[:8], rand.Uint64())
		putU64(tid[8:], rand.Uint64())
		putU64(sid[:], rand.Uint64())
		if tid != [16]byte{} && sid != [8]byte{} {
			break
		}
	}
	return FormatTraceparent(tid, sid, false)
}

// FormatTraceparent renders a version-00 traceparent.
func FormatTraceparent(traceID [16]byte, spanID [8]byte, sampled bool) string {
	var s [55]byte
	s[0], s[1], s[2] = '0', '0', '-'
	hex.Encode(s[3:35], traceID[:])
	s[35] = '-'
	hex.Encode(s[36:52], spanID[:])
	s[52], s[53], s[54] = '-', '0', '0'
	if sampled {
		s[54] = '1'
	}
	return string(s[:])
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// ValidTraceparent checks a traceparent by W3C Trace Context level 1:
// version-format-2 hex, lower-case hex ids that are not all zero, version
// ff refused, and for a future version the 00 layout followed by nothing
// or by '-' and more.
func ValidTraceparent(s string) bool {
	if len(s) < 55 {
		return false
	}
	if !lowerHex(s[0:2]) || s[0:2] == "ff" || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	if s[0:2] == "00" && len(s) != 55 {
		return false
	}
	if len(s) > 55 && s[55] != '-' {
		return false
	}
	tid, sid, flags := s[3:35], s[36:52], s[53:55]
	return lowerHex(tid) && lowerHex(sid) && lowerHex(flags) &&
		strings.Trim(tid, "0") != "" && strings.Trim(sid, "0") != ""
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
