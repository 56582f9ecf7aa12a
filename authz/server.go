// Package authz is gatehouse's ext_authz server
// (envoy.service.auth.v3.Authorization/Check): it finds the route of each
// request Envoy asks about, authenticates the caller by the methods the
// route accepts (JWT, API key, mTLS/SPIFFE, webhook signature), checks
// what the route requires, and answers with identity headers and dynamic
// metadata, or a denial with the right status. Every decision is counted,
// audited and has an id the client sees.
//
// This file is the gRPC transport only; the decision is made by the
// engine (engine.go), which knows nothing of gRPC.
package authz

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/authz/internal/core"
)

// Register implements component.Component.
func (s *Server) Register(g grpc.ServiceRegistrar) { authv3.RegisterAuthorizationServer(g, s) }

// Check implements authv3.AuthorizationServer. It never returns a gRPC
// error for a decided request: every outcome, malformed input included,
// is a CheckResponse with a status Envoy acts on.
func (s *Server) Check(ctx context.Context, cr *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	e := s.engine.Load()
	var r core.Request
	code := requestFrom(cr, &r)
	if s.deps.Tracing.Enabled() {
		// Skipped when tracing is off: even the no-op span walks the
		// RPC's context chain, which shows in a profile under load.
		var span trace.Span
		ctx, span = s.deps.Tracing.StartFromHeaders(ctx, "authz.Check", carrier(r.Headers))
		defer span.End()
	}
	var d decision
	if code != core.OK {
		d = e.finish(decision{route: e.nomatch}, code, nil, nil)
	} else {
		d = e.decide(ctx, &r, nil)
	}
	id := s.ids.next()
	reqID := requestID(&r)
	resp := e.respond(&d, id, reqID, true)
	s.record(e, &d, &r, id, reqID, start)
	return resp, nil
}
