// Package idempotency stores the first response to a request carrying an
// Idempotency-Key and decides what a retry gets, with Stripe's semantics:
// the same key and the same request (fingerprint) replay the stored
// response; the same key with a different request is refused (422); a
// retry while the first request is still in flight is refused (409).
//
// A key moves through two states, each one value under one Redis key so
// that every step is a single atomic script, which keeps replicas
// consistent with no lock service: in flight (fingerprint and the owner
// token of the request that claimed it, expiring after the lock timeout
// so that a lost request frees its key) and done (fingerprint and the
// response, expiring after the TTL).
package idempotency

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/gatehouse/gatehouse/internal/kv"
)

// ErrUnavailable wraps store failures (unreachable, timed out, full), so
// that the caller applies the route's failure mode.
var ErrUnavailable = errors.New("idempotency: store unavailable")

// ErrCorrupt is returned for a stored value this code cannot read.
var ErrCorrupt = errors.New("idempotency: stored record is corrupt")

// Outcome is what Begin found.
type Outcome int

// Outcomes of Begin.
const (
	// Acquired: the key was free and now belongs to the caller, who runs
	// the request and then calls Complete or Release.
	Acquired Outcome = iota
	// Replay: a response is stored for this key and fingerprint.
	Replay
	// InFlight: the first request with this key and fingerprint is still
	// running.
	InFlight
	// Mismatch: the key was used for a different request.
	Mismatch
)

var outcomeNames = [...]string{"acquired", "replay", "in_flight", "mismatch"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Fingerprint identifies a request's content (method, path, body).
type Fingerprint [32]byte

// NewFingerprint hashes what makes two requests "the same" for a retry.
func NewFingerprint(method, path string, body []byte) Fingerprint {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	var fp Fingerprint
	h.Sum(fp[:0])
	return fp
}

// Owner is the random token of the request that claimed a key, so that a
// request whose lock expired cannot complete or release a key a retry has
// claimed since.
type Owner [16]byte

// NewOwner returns a fresh owner token.
func NewOwner() Owner {
	var o Owner
	_, _ = rand.Read(o[:]) // crypto/rand.Read never fails on Linux (Go 1.24+)
	return o
}

// ValidKey accepts what Stripe accepts: 1-255 visible ASCII characters.
func ValidKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// StoreKey derives the store key of a client key: namespaced by route and
// by the caller's scope (hashes of its credentials), and hashed so that
// neither the key nor a credential is ever written to the store.
func StoreKey(route string, scope []string, key string) string {
	h := sha256.New()
	for _, s := range scope {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write([]byte{0xff})
	h.Write([]byte(key))
	return kv.NamespaceIdempotency + route + ":" + hex.EncodeToString(h.Sum(nil)[:20])
}

// Record is a stored response.
type Record struct {
	Status int
	Header [][2]string
	Body   []byte
}

// Frees reports whether a response with status says the request did not
// run, so that its key is freed and a retry runs it: 401/403 (refused
// by the upstream, or by ext_authz where one ext_proc filter runs in front
// of it), 408, 425, 429 (rate limited), and 502/503 (the
// upstream was not reached). A request with any other answer ran, or may
// have: its key is stored with the response or stays held.
func Frees(status int) bool {
	switch status {
	case 401, 403, 408, 425, 429, 502, 503:
		return true
	}
	return false
}

// Storable reports whether a response with status should be stored and
// replayed. Every status that is the endpoint's answer, 500 included, is
// replayed, as Stripe does; not those that free the key (Frees), nor 504
// (the upstream did not answer in time: what it did is unknown), nor one
// Envoy's ImmediateResponse cannot carry (outside envoy.type.v3.StatusCode,
// such as 299 or 520), which could not be replayed faithfully. The key of
// a request that ran but cannot be stored stays held until the lock
// expires, so that a retry does not run it again at once.
func Storable(status int) bool {
	if Frees(status) || status == 504 {
		return false
	}
	if _, ok := typev3.StatusCode_name[int32(status)]; !ok {
		return false
	}
	return status >= 200 && status <= 599
}

// replayDropped are response headers not replayed: hop-by-hop ones, a
// length Envoy recomputes, and a date that would be stale.
var replayDropped = map[string]bool{
	"connection": true, "keep-alive": true, "transfer-encoding": true, "te": true, "trailer": true,
	"upgrade": true, "proxy-authenticate": true, "proxy-connection": true, "content-length": true, "date": true,
}

// Replayable reports whether header name is kept in a stored record.
func Replayable(name string) bool {
	return !strings.HasPrefix(name, ":") && !replayDropped[name]
}

// Value encoding: version, state, fingerprint, then the owner (in flight)
// or the record (done).
const (
	version   = 1
	stateLock = 'L'
	stateDone = 'D'
	headLen   = 2 + len(Fingerprint{})
)

func lockValue(fp Fingerprint, o Owner) string {
	b := make([]byte, 0, headLen+len(o))
	b = append(b, version, stateLock)
	b = append(b, fp[:]...)
	return string(append(b, o[:]...))
}

func doneValue(fp Fingerprint, r *Record) []byte {
	n := headLen + 2 + 4 + len(r.Body)
	for _, h := range r.Header {
		n += 8 + len(h[0]) + len(h[1])
	}
	b := make([]byte, 0, n)
	b = append(b, version, stateDone)
	b = append(b, fp[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(r.Status))
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Header)))
	for _, h := range r.Header {
		b = binary.BigEndian.AppendUint32(b, uint32(len(h[0])))
		b = append(b, h[0]...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(h[1])))
		b = append(b, h[1]...)
	}
	return append(b, r.Body...)
}

// decode reads a stored value: its state, fingerprint and (done) record.
func decode(v []byte) (state byte, fp Fingerprint, rec *Record, err error) {
	if len(v) < headLen || v[0] != version || (v[1] != stateLock && v[1] != stateDone) {
		return 0, fp, nil, ErrCorrupt
	}
	state = v[1]
	copy(fp[:], v[2:headLen])
	if state == stateLock {
		return state, fp, nil, nil
	}
	rec, err = decodeRecord(v[headLen:])
	return state, fp, rec, err
}

func decodeRecord(b []byte) (*Record, error) {
	if len(b) < 6 {
		return nil, ErrCorrupt
	}
	r := &Record{Status: int(binary.BigEndian.Uint16(b))}
	n := binary.BigEndian.Uint32(b[2:])
	b = b[6:]
	if r.Status < 100 || r.Status > 599 || uint64(n) > uint64(len(b))/8 {
		return nil, ErrCorrupt
	}
	str := func() (string, bool) {
		if len(b) < 4 {
			return "", false
		}
		l := binary.BigEndian.Uint32(b)
		if uint64(l) > uint64(len(b)-4) {
			return "", false
		}
		s := string(b[4 : 4+l])
		b = b[4+l:]
		return s, true
	}
	r.Header = make([][2]string, 0, n)
	for range n {
		k, ok1 := str()
		v, ok2 := str()
		if !ok1 || !ok2 {
			return nil, ErrCorrupt
		}
		r.Header = append(r.Header, [2]string{k, v})
	}
	r.Body = b
	return r, nil
}

// outcome turns what Begin found under a key into an Outcome.
func outcome(v []byte, fp Fingerprint) (Outcome, *Record, error) {
	state, got, rec, err := decode(v)
	if err != nil {
		return 0, nil, err
	}
	if got != fp {
		return Mismatch, nil, nil
	}
	if state == stateLock {
		return InFlight, nil, nil
	}
	return Replay, rec, nil
}

// Store is where keys live: Redis (shared by replicas) or memory.
type Store interface {
	// Begin claims key for a request with fingerprint fp, owned by o, for
	// lock; or reports what holds the key already.
	Begin(ctx context.Context, key string, fp Fingerprint, o Owner, lock time.Duration) (Outcome, *Record, error)
	// Complete stores the response of the request that claimed key, for
	// ttl. It reports false when the claim was lost (expired, or another
	// request holds the key now) and nothing was stored.
	Complete(ctx context.Context, key string, fp Fingerprint, o Owner, r *Record, ttl time.Duration) (bool, error)
	// Release frees a key the request still holds, so that a retry runs.
	Release(ctx context.Context, key string, fp Fingerprint, o Owner) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Shared reports whether replicas share the store.
	Shared() bool
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
}
