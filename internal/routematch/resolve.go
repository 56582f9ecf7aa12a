package routematch

import (
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
)

// Resolution says how Resolve found (or did not find) a request's route.
type Resolution uint8

// Resolutions.
const (
	// ByID: a route id Envoy carried names a configured route.
	ByID Resolution = iota
	// ByMatch: no usable id; the request matched the route.
	ByMatch
	// UnknownID: Envoy carried a route id the config does not have, and
	// the component's policy left the request without a route.
	UnknownID
	// NoMatch: no route id, and no route matches the request.
	NoMatch
)

// Resolver finds the route of a request for one component: by the route
// id Envoy carries (see internal/contract), else by matching the request
// as Envoy's route table would. R is the component's compiled route. It
// is immutable and safe for concurrent use.
type Resolver[R any] struct {
	byID    map[string]R
	table   *Table
	unknown contract.UnknownRoutePolicy
}

// NewResolver builds the resolver of the configured routes, with byID
// holding each route's compiled form under its id and policy saying what
// an unknown id gets (one of contract's per-component policies). The
// routes must have passed config validation.
func NewResolver[R any](routes []config.Route, byID map[string]R, policy contract.UnknownRoutePolicy) *Resolver[R] {
	return &Resolver[R]{byID: byID, table: New(routes), unknown: policy}
}

// Resolve returns the route of a request. ids are the route ids Envoy
// carried, in order of trust ("" for one not sent): the first that names
// a configured route wins, and idx is its index. Without one, the request
// req returns is matched, unless an id was sent and the policy refuses or
// ignores unknown ids. req is called only then, so that a request with a
// known id costs no request to match; it is nil, or returns nil, when the
// component has no request to match (the rate limit service). id is the
// route id found, or the first unknown id sent (UnknownID), or "".
func (r *Resolver[R]) Resolve(req func() *Request, ids ...string) (route R, res Resolution, id string, idx int) {
	unknown := ""
	for i, id := range ids {
		if id == "" {
			continue
		}
		if rt, ok := r.byID[id]; ok {
			return rt, ByID, id, i
		}
		if unknown == "" {
			unknown = id
		}
	}
	var zero R
	if unknown != "" && r.unknown != contract.UnknownRouteMatch {
		return zero, UnknownID, unknown, -1
	}
	var m *Request
	if req != nil {
		m = req()
	}
	if m != nil {
		if id, ok := r.table.Match(*m); ok {
			if rt, ok := r.byID[id]; ok {
				return rt, ByMatch, id, -1
			}
		}
	}
	if unknown != "" {
		return zero, UnknownID, unknown, -1
	}
	return zero, NoMatch, "", -1
}
