package kv

// The namespaces of gatehouse's keys in the shared store. Every key is
// <redis.keyPrefix><namespace><rest>: the config's prefix separates
// gatehouse deployments sharing one Redis, and a namespace separates the
// components of one deployment. They are listed here, once, so that no
// two components can pick the same one (the rate limiter and
// extproc's idempotency store write Redis directly, not through Store).
const (
	// NamespaceRateLimit holds rate limit counters:
	// rl:{<identity>}:<algorithm><count><unit>[c][:<window start>].
	NamespaceRateLimit = "rl:"
	// NamespaceIdempotency holds idempotency records:
	// idem:<route>:<hash of the caller's scope and key>.
	NamespaceIdempotency = "idem:"
	// NamespaceWebhookReplay holds webhook replay guards:
	// authz:webhook:replay:<source>:<hash of the delivery>.
	NamespaceWebhookReplay = "authz:webhook:replay:"
)
