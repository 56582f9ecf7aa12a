// Package audit writes gatehouse's audit log: one JSON line per authz
// decision, webhook verification, config change and xDS NACK, hash-chained
// so that `gatehouse audit verify` detects a line changed, removed or
// reordered. Writing is asynchronous through a bounded buffer that never
// blocks a decision; a line dropped because the buffer was full is counted
// and the next written line records the gap.
//
// Events are an allow-list of typed fields: there is no free-form map, so
// a token, secret, cookie or query string cannot slip into a line.
package audit

import "time"

// Kind is the type of an audited event.
type Kind string

// Kinds of events.
const (
	KindDecision     Kind = "authz.decision"
	KindWebhook      Kind = "webhook.verify"
	KindConfigChange Kind = "config.change"
	KindConfigReject Kind = "config.reject"
	KindXDSNack      Kind = "xds.nack"
	// KindJWKSChange is a fetch that changed an issuer's remote key set:
	// keys added or removed, by kid (never key material).
	KindJWKSChange Kind = "jwks.change"
	// KindBudgetSettle is the settlement of a request's cost budget: its
	// settle id (ID), the caller, and in Detail the budget, the estimate
	// reserved, the actual cost and how it was read.
	KindBudgetSettle Kind = "budget.settle"
	// KindStart is the first line a writer writes to a sink: it continues
	// the chain found there or begins a new one, and says which.
	KindStart Kind = "audit.start"
	// KindStop is the last line a writer writes when it closes the log.
	KindStop Kind = "audit.stop"
)

// Event is one audited fact. Only the fields that apply are set.
type Event struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// ID is the decision id, also returned to the client.
	ID        string `json:"id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Route     string `json:"route,omitempty"`
	// Decision is allow, deny or would_deny (shadow mode).
	Decision string `json:"decision,omitempty"`
	// Reason is a code from a closed, documented set.
	Reason        string `json:"reason,omitempty"`
	AuthMethod    string `json:"auth_method,omitempty"`
	Subject       string `json:"subject,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	SPIFFEID      string `json:"spiffe_id,omitempty"`
	Tier          string `json:"tier,omitempty"`
	ClientAddr    string `json:"client_addr,omitempty"`
	Method        string `json:"method,omitempty"`
	Path          string `json:"path,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
	LatencyUS     int64  `json:"latency_us,omitempty"`
	// Node is the xDS node id (NACKs).
	Node string `json:"node,omitempty"`
	// Version is a config or xDS version (config changes, NACKs).
	Version string `json:"version,omitempty"`
	// Detail is a human-readable explanation: config errors, NACK detail.
	// Never put request data in it.
	Detail string `json:"detail,omitempty"`
}

// Recorder takes events. Record must not block: implementations buffer.
type Recorder interface {
	Record(e Event)
}
