package extproc

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/gatehouse/gatehouse/extproc/hygiene"
	"github.com/gatehouse/gatehouse/extproc/idempotency"
)

// idemPolicy is a route's idempotency settings.
type idemPolicy struct {
	header   string
	methods  []string
	required bool
	ttl      time.Duration
	lock     time.Duration
	// scope are the credential headers that scope keys of callers
	// ext_authz did not verify (no second stage, authz off or failed
	// open); extraScope the route's scopeHeaders, which always do.
	scope      []string
	extraScope []string
	failOpen   bool
}

func (p *idemPolicy) applies(method string) bool { return slices.Contains(p.methods, method) }

// idemState is a request's idempotency: the key it carries and, once
// claimed, what it holds in the store.
type idemState struct {
	key   string // store key; "" when the request carries none
	fp    idempotency.Fingerprint
	owner idempotency.Owner
	held  bool // this request holds the key (in flight)
	// forwarded: the answer that let the request go on was sent, so the
	// upstream may run it; the key is no longer released on a reset.
	forwarded bool
	rec       *idempotency.Record
}

// idempotencyKey reads and checks the request's key, for a method the
// route applies keys to.
func (s *stream) idempotencyKey(hs []hygiene.Header) *extprocv3.ProcessingResponse {
	p, r := s.route.idem, s.route
	key, ok := headerValue(hs, p.header)
	switch {
	case !ok && p.required:
		r.m.idempotency("missing_key")
		return s.problem(problem{Type: problemKeyMissing, Title: "Idempotency key required", Status: 400,
			Detail: fmt.Sprintf("%s requests to this API need an %s header.", s.method, http.CanonicalHeaderKey(p.header))})
	case !ok:
		return nil
	case !idempotency.ValidKey(key):
		r.m.idempotency("invalid_key")
		return s.problem(problem{Type: problemKeyInvalid, Title: "Invalid idempotency key", Status: 400,
			Detail: "An idempotency key is 1 to 255 visible ASCII characters."})
	}
	scope := s.idempotencyScope(hs)
	s.idem.key = idempotency.StoreKey(r.id, scope, key)
	return nil
}

// verifiedScope starts the scope of a verified caller's keys. It holds a
// NUL, which no header value can: no choice of credential headers by an
// unverified caller hashes into a verified caller's key space.
const verifiedScope = "\x00verified"

// idempotencyScope is what a request's key is scoped by: the caller
// ext_authz verified (auth method, issuer, subject), so that a caller
// whose token was refreshed still gets its replay and no other caller
// ever does; else, where no verified identity reached the stream, the
// values of the credential headers. The route's scopeHeaders follow.
func (s *stream) idempotencyScope(hs []hygiene.Header) []string {
	p := s.route.idem
	var scope []string
	if id := s.caller; id.verified() {
		scope = append(make([]string, 0, 4+len(p.extraScope)), verifiedScope, id.method, id.issuer, id.subject)
	} else {
		scope = make([]string, 0, len(p.scope)+len(p.extraScope))
		for _, n := range p.scope {
			v, _ := headerValue(hs, n)
			scope = append(scope, v)
		}
	}
	for _, n := range p.extraScope {
		v, _ := headerValue(hs, n)
		scope = append(scope, v)
	}
	return scope
}

// claim asks the store for the request's key.
func (s *stream) claim(ctx context.Context, body []byte) *extprocv3.ProcessingResponse {
	r, p := s.route, s.route.idem
	s.idem.fp = idempotency.NewFingerprint(s.method, s.path, body)
	s.idem.owner = idempotency.NewOwner()
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	out, rec, err := s.srv.store.Begin(ctx, s.idem.key, s.idem.fp, s.idem.owner, p.lock)
	if err != nil {
		return s.storeFailed(err)
	}
	r.m.idempotency(out.String())
	switch out {
	case idempotency.Acquired:
		s.idem.held = true
		return nil
	case idempotency.Replay:
		return s.replay(rec)
	case idempotency.InFlight:
		return s.problem(problem{Type: problemKeyInFlight, Title: "Request with this idempotency key in progress", Status: 409,
			Detail: "A request with the same idempotency key is still being processed, or went to the service and ended without a response to replay; retry later."})
	default:
		return s.problem(problem{Type: problemKeyReused, Title: "Idempotency key reused", Status: 422,
			Detail: "This idempotency key was used for a different request; use a new key for a new request."})
	}
}

// storeFailed applies the route's failure mode to a store error.
func (s *stream) storeFailed(err error) *extprocv3.ProcessingResponse {
	r := s.route
	s.idem.key = ""
	if r.idem.failOpen {
		r.m.idempotency("store_error_open")
		s.srv.log.Warn("idempotency store unavailable; request goes on without idempotency (failureMode open)", "route", r.id, "err", err)
		return nil
	}
	r.m.idempotency("store_error_closed")
	s.srv.log.Warn("idempotency store unavailable; request refused (failureMode closed)", "route", r.id, "err", err)
	return s.problem(problem{Type: problemStoreFailure, Title: "Idempotency unavailable", Status: 503,
		Detail: "Idempotency keys cannot be checked right now; retry shortly."})
}

// replay answers a retry with the stored response.
func (s *stream) replay(rec *idempotency.Record) *extprocv3.ProcessingResponse {
	var m mutation
	// The first value of a name replaces what Envoy's local reply has (its
	// content-type); later ones are added, or a response with two
	// set-cookie headers would be replayed with one.
	seen := make(map[string]bool, len(rec.Header))
	for _, h := range rec.Header {
		if seen[h[0]] {
			m.addHeader(h[0], h[1])
			continue
		}
		seen[h[0]] = true
		m.setHeader(h[0], h[1])
	}
	m.setHeader("idempotent-replayed", "true")
	s.finalHeaders(&m)
	return s.immediate(rec.Status, &m, rec.Body, "gatehouse_idempotent_replay")
}

// store completes the request's key with its response.
func (s *stream) store(ctx context.Context, body []byte) {
	r := s.route
	s.idem.held = false
	s.idem.rec.Body = body
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	ok, err := s.srv.store.Complete(ctx, s.idem.key, s.idem.fp, s.idem.owner, s.idem.rec, r.idem.ttl)
	switch {
	case err != nil:
		r.m.idempotency("store_error")
		s.srv.log.Warn("idempotency record not stored; retries get 409 until lockTimeout, then run the request again", "route", r.id, "err", err)
	case !ok:
		// The lock expired (the request ran longer than lockTimeout) and a
		// retry may have claimed the key since.
		r.m.idempotency("lost")
	default:
		r.m.idempotency("stored")
	}
}

// release frees the key the request holds so that a retry runs: for a
// request that never went on, or a response saying it did not run.
func (s *stream) release(ctx context.Context, reason string) {
	if !s.idem.held {
		return
	}
	s.idem.held = false
	r := s.route
	r.m.idempotency(reason)
	ctx, cancel := context.WithDeadline(ctx, s.deadline)
	defer cancel()
	if err := s.srv.store.Release(ctx, s.idem.key, s.idem.fp, s.idem.owner); err != nil {
		s.srv.log.Warn("idempotency key not released; retries get 409 until lockTimeout", "route", r.id, "err", err)
	}
}
