// Package budget keeps cost budgets: tokens, bytes or credits a caller may
// spend per window (a minute, a day, a calendar month in a time zone),
// where the cost of a request is known only once its response is done.
//
// A request first reserves an estimate against every window of its
// budget, atomically: all windows have room and all are charged, or none
// is and the request is refused. When the response completes, the
// reservation is settled with the actual cost: the difference is refunded
// or charged extra, in one round trip, exactly once (the settle id is the
// reservation's; a second settle with the same id changes nothing). A
// reservation nobody settles (the replica holding it died) expires after
// its hold time and is reconciled by the next reservation of the same
// budget key: charged at its estimate or refunded, as configured.
//
// Overspend bound: a window's spend exceeds its amount only by extra
// charges made at settlement, so by at most the sum of the under-estimates
// (actual − reserved, where positive) of the requests in flight when the
// budget ran out. A request whose reservation is capped at what the
// upstream may bill (say max_tokens) cannot overspend at all.
//
// The Redis store runs reserve and settle as Lua scripts (reserve.lua,
// settle.lua); the in-process store is their Go twin, and the store tests
// hold the two to the same answers on a real redis-server.
package budget

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// MaxAmount bounds every amount and cost, so that every sum stays exact
// in Redis Lua's double-precision numbers.
const MaxAmount = 1 << 50

// Limit is one window of a budget: Amount units per Window.
type Limit struct {
	// Name names the limit in RateLimit-Policy and metrics.
	Name   string
	Amount uint64
	Window algo.Window
}

// Tag is the limit's window in counter keys: count, unit, 'c' when
// calendar-aligned ("1moc"). Two limits of one budget never share a tag
// (config validation), and a changed amount keeps the spend counted so
// far in the window.
func (l Limit) Tag() string {
	t := strconv.FormatInt(l.Window.Count, 10) + l.Window.Unit.Abbrev()
	if l.Window.Calendar {
		t += "c"
	}
	return t
}

// OnExpiry is what reconciliation does with a reservation nobody settled.
type OnExpiry uint8

// Expiry rules.
const (
	// ExpireCharge keeps the estimate charged: the upstream probably did
	// the work (the default, fail closed).
	ExpireCharge OnExpiry = iota
	// ExpireRefund gives the estimate back.
	ExpireRefund
)

// Reservation is what a request reserves.
type Reservation struct {
	// Key is the budget key (budget name and whom it is kept for); the
	// keys of one budget key share a Redis Cluster hash tag.
	Key string
	// ID is the settle id, unique per request (NewID).
	ID string
	// Amount is the estimate reserved.
	Amount uint64
	// Limits are the caller's windows, all reserved atomically.
	Limits []Limit
	// Hold is how long the reservation waits for its settlement before
	// reconciliation may expire it.
	Hold time.Duration
	// OnExpiry is the reconciliation rule.
	OnExpiry OnExpiry
}

// Window is one limit's state after a reserve or settle.
type Window struct {
	// Used is what the window holds (spent and reserved).
	Used uint64
	// Reset is when the window ends.
	Reset time.Time
}

// Remaining is what the window still admits under limit l.
func (w Window) Remaining(l Limit) uint64 {
	if w.Used >= l.Amount {
		return 0
	}
	return l.Amount - w.Used
}

// Outcome is the answer to a reservation.
type Outcome struct {
	// Admitted: every window had room and all were charged.
	Admitted bool
	// Windows are the limits' states, in Reservation.Limits order: after
	// the reservation when admitted, else as they were.
	Windows []Window
	// Expired counts orphaned reservations of the key reconciled first.
	Expired int
}

// Tightest is the index of the limit with the least room left (the one
// that refused, on a refusal; the latest to reset among those with none).
func (o *Outcome) Tightest(ls []Limit) int {
	best := -1
	for i, w := range o.Windows {
		if best < 0 {
			best = i
			continue
		}
		r, br := w.Remaining(ls[i]), o.Windows[best].Remaining(ls[best])
		if r < br || (r == br && w.Reset.After(o.Windows[best].Reset)) {
			best = i
		}
	}
	return best
}

// SettleStatus is what a settlement did.
type SettleStatus uint8

// Settlement statuses.
const (
	// Settled: the difference was applied.
	Settled SettleStatus = iota + 1
	// Duplicate: this id was settled before; nothing changed.
	Duplicate
	// Late: the reservation had expired and been reconciled; the
	// difference to what reconciliation charged was applied.
	Late
	// Unknown: no reservation with this id is held (never made, or its
	// record is gone); nothing changed.
	Unknown
)

var settleNames = [...]string{Settled: "settled", Duplicate: "duplicate", Late: "late", Unknown: "unknown"}

func (s SettleStatus) String() string {
	if int(s) < len(settleNames) && settleNames[s] != "" {
		return settleNames[s]
	}
	return "invalid"
}

// Settlement is the actual cost of a reserved request.
type Settlement struct {
	Key    string
	ID     string
	Actual uint64
	// Hold is the reservation's hold. The settled record is kept for the
	// shorter of it and settledKeep, so that a retried settle is
	// recognised (a settle after that finds no record and changes
	// nothing either: exactly once holds without it).
	Hold time.Duration
}

// SettleOutcome is the answer to a settlement.
type SettleOutcome struct {
	Status SettleStatus
	// Reserved is the reservation's estimate; Delta what the settlement
	// added to each window (negative: a refund).
	Reserved uint64
	Delta    int64
}

// Store keeps budgets.
type Store interface {
	// Reserve reconciles the key's expired reservations, then reserves
	// r.Amount in every window of r.Limits, or in none.
	Reserve(ctx context.Context, r *Reservation) (Outcome, error)
	// Settle applies the actual cost of a reservation, exactly once.
	Settle(ctx context.Context, s *Settlement) (SettleOutcome, error)
	// Peek reads what the windows of limits hold now for key, without
	// reserving or reconciling (status pages, tests).
	Peek(ctx context.Context, key string, limits []Limit) ([]Window, error)
	// Ping reports whether the store can be reached.
	Ping(ctx context.Context) error
}

// Errors of the stores.
var (
	// ErrUnavailable: the store cannot answer; apply the failure mode.
	ErrUnavailable = errors.New("budget: store unavailable")
	// ErrFull: the in-process store holds its maximum of entries.
	ErrFull = errors.New("budget: in-process store is full")
	// ErrInvalid: a reservation or settlement is malformed.
	ErrInvalid = errors.New("budget: invalid request")
)

// NewID returns a random settle id (128 bits, hex).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Key is the budget key of a budget name and whom it is kept for (a
// subject, a tier, or "" for one budget shared by all callers). The
// value is hashed: any subject makes a key of bounded length that no
// character of it can split or redirect.
func Key(budget, by, value string) string {
	h := sha256.Sum256([]byte(budget + "\x00" + by + "\x00" + value))
	return budget + ":" + hex.EncodeToString(h[:12])
}

// keys are the Redis keys of one budget key: all share the hash tag.
type keys struct{ base string }

func keysOf(prefix, key string) keys { return keys{base: "{" + prefix + "budget:" + key + "}"} }

func (k keys) open() string                 { return k.base + ":open" }
func (k keys) reservation(id string) string { return k.base + ":r:" + id }
func (k keys) reservationPrefix() string    { return k.base + ":r:" }
func (k keys) counter(l Limit, start int64) string {
	return k.base + ":c:" + l.Tag() + ":" + strconv.FormatInt(start/1e6, 10)
}

// validID: the ids NewID makes, or any short id of key-safe characters
// (a caller's own settle ids).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	return !strings.ContainsAny(id, "{}:, \t\r\n")
}

func (r *Reservation) validate() error {
	if r.Key == "" || !validID(r.ID) || len(r.Limits) == 0 || r.Amount > MaxAmount || r.Hold <= 0 {
		return ErrInvalid
	}
	for _, l := range r.Limits {
		if l.Amount > MaxAmount || l.Window.Count < 1 || !l.Window.Unit.Valid() {
			return ErrInvalid
		}
	}
	return nil
}

func (s *Settlement) validate() error {
	if s.Key == "" || !validID(s.ID) || s.Actual > MaxAmount || s.Hold <= 0 {
		return ErrInvalid
	}
	return nil
}

// settledKeep bounds how long a settled record is kept.
const settledKeep = time.Minute

func (s *Settlement) keep() time.Duration { return min(s.Hold, settledKeep) }

// grace is how long a counter outlives its window, so that a settlement
// arriving after the window ended still finds the counter it reserved in.
func grace(hold time.Duration) int64 { return (2*hold + time.Minute).Milliseconds() }

// windowOf is limit l's window at now: its counter key, end and the
// counter's time to live in milliseconds.
func windowOf(k keys, l Limit, now time.Time, hold time.Duration) (key string, end time.Time, ttl int64) {
	start, e := l.Window.Bounds(now.UnixMicro())
	end = time.UnixMicro(e)
	ttl = max(1, ceilDiv(e-now.UnixMicro(), 1000)+grace(hold))
	return k.counter(l, start), end, ttl
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
