package authz

import (
	"context"
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/gatehouse/gatehouse/authz/internal/core"
)

// Explanation is a decision with every step that led to it, for
// `gatehouse check`.
type Explanation struct {
	Steps    []string
	Route    string
	Decision string
	Reason   string
	// Status is the HTTP status Envoy answers with (200 when allowed).
	Status   int
	Subject  string
	Tier     string
	Response *authv3.CheckResponse
}

type steps struct{ list []string }

func (s *steps) Step(format string, args ...any) {
	s.list = append(s.list, fmt.Sprintf(format, args...))
}

// Explain decides cr like Check (without counting or auditing it) and
// explains each step.
func (s *Server) Explain(ctx context.Context, cr *authv3.CheckRequest) Explanation {
	e := s.engine.Load()
	st := &steps{}
	var r core.Request
	var d decision
	if code := requestFrom(cr, &r); code != core.OK {
		st.Step("the CheckRequest has no attributes.request.http with a method and a path")
		d = e.finish(decision{route: e.nomatch}, code, nil, st)
	} else {
		d = e.decide(ctx, &r, st)
	}
	id := s.ids.next()
	resp := e.respond(&d, id, requestID(&r), false)
	x := Explanation{Steps: st.list, Route: d.route.id, Decision: d.outcome.String(), Reason: d.code.String(), Tier: d.tier, Response: resp, Status: 200}
	if d.outcome == deny {
		x.Status = d.code.Info().Status
	}
	if d.identity != nil {
		x.Subject = d.identity.Subject
	}
	return x
}
