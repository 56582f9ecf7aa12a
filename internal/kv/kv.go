// Package kv is the small key/value store that webhook replay guards and
// idempotency records need: set-if-absent with a TTL, get, set, delete.
// Redis backs it when configured, so that every replica sees the same
// keys; otherwise an in-process map does (one replica).
package kv

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable wraps store failures, so that callers can apply their
// configured failure mode (open or closed) without knowing the backend.
var ErrUnavailable = errors.New("kv: store unavailable")

// Store is a key/value store with expiring keys. Keys are namespaced by the
// caller, with a namespace of keys.go.
type Store interface {
	// SetNX stores value under key for ttl if key is absent, and reports
	// whether it did.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Get returns the value of key and whether it exists.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl, replacing any value.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Delete removes key; removing an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Shared reports whether the store is shared by all replicas (Redis)
	// rather than local to this process.
	Shared() bool
}
