package budget

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed reserve.lua
	reserveSource string
	//go:embed settle.lua
	settleSource string

	reserveScript = redis.NewScript(reserveSource)
	settleScript  = redis.NewScript(settleSource)
)

// maxReconcile bounds the expired reservations one reserve reconciles, so
// that a backlog of orphans (a replica died with many streams open) costs
// each later reservation a bounded time; the rest go with the next ones.
const maxReconcile = 16

// errIDInUse: a reservation id was reused (a caller's bug: ids are random).
var errIDInUse = errors.New("budget: reservation id in use")

// recordTTL is how long a reservation's record lives: its hold, then a
// day for a late settlement or reconciliation to find it.
func recordTTL(hold time.Duration) time.Duration { return hold + 24*time.Hour }

// Redis is the store shared by every replica: one script call per reserve
// and per settle, on a single server, Sentinel or Cluster (every key of a
// budget key shares its hash tag).
type Redis struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
}

// RedisOptions tune the Redis store.
type RedisOptions struct {
	// KeyPrefix namespaces the keys (config redis.keyPrefix).
	KeyPrefix string
	// Now is the clock (tests); default time.Now. Replicas' clocks decide
	// which window a reservation lands in: keep them in sync (NTP).
	Now func() time.Time
}

// NewRedis makes the Redis store.
func NewRedis(c redis.UniversalClient, o RedisOptions) *Redis {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Redis{client: c, prefix: o.KeyPrefix, now: o.Now}
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Reserve implements Store.
func (r *Redis) Reserve(ctx context.Context, res *Reservation) (Outcome, error) {
	if err := res.validate(); err != nil {
		return Outcome{}, err
	}
	now := r.now()
	k := keysOf(r.prefix, res.Key)
	ks := make([]string, 2, 2+len(res.Limits))
	ks[0], ks[1] = k.open(), k.reservation(res.ID)
	onexp := "0"
	if res.OnExpiry == ExpireRefund {
		onexp = "1"
	}
	args := make([]any, 0, 8+2*len(res.Limits))
	args = append(args, now.UnixMilli(), res.Amount, res.Hold.Milliseconds(), onexp,
		recordTTL(res.Hold).Milliseconds(), maxReconcile, k.reservationPrefix(), res.ID)
	out := Outcome{Windows: make([]Window, len(res.Limits))}
	for i, l := range res.Limits {
		key, end, ttl := windowOf(k, l, now, res.Hold)
		ks = append(ks, key)
		args = append(args, l.Amount, ttl)
		out.Windows[i].Reset = end
	}
	v, err := reserveScript.Run(ctx, r.client, ks, args...).Int64Slice()
	if err != nil {
		if strings.Contains(err.Error(), errIDInUse.Error()) {
			return Outcome{}, errIDInUse
		}
		return Outcome{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if len(v) != 2+len(res.Limits) {
		return Outcome{}, fmt.Errorf("%w: reserve script returned %d values, want %d", ErrUnavailable, len(v), 2+len(res.Limits))
	}
	out.Admitted, out.Expired = v[0] == 1, int(v[1])
	for i := range res.Limits {
		out.Windows[i].Used = uint64(max(0, v[2+i]))
	}
	return out, nil
}

// Settle implements Store.
func (r *Redis) Settle(ctx context.Context, s *Settlement) (SettleOutcome, error) {
	if err := s.validate(); err != nil {
		return SettleOutcome{}, err
	}
	k := keysOf(r.prefix, s.Key)
	v, err := settleScript.Run(ctx, r.client, []string{k.open(), k.reservation(s.ID)},
		strconv.FormatUint(s.Actual, 10), s.keep().Milliseconds(), s.ID).Int64Slice()
	if err != nil {
		return SettleOutcome{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if len(v) != 3 || v[0] < int64(Settled) || v[0] > int64(Unknown) {
		return SettleOutcome{}, fmt.Errorf("%w: settle script returned %v", ErrUnavailable, v)
	}
	return SettleOutcome{Status: SettleStatus(v[0]), Reserved: uint64(max(0, v[1])), Delta: v[2]}, nil
}

// Peek implements Store.
func (r *Redis) Peek(ctx context.Context, key string, limits []Limit) ([]Window, error) {
	now := r.now()
	k := keysOf(r.prefix, key)
	ws := make([]Window, len(limits))
	ks := make([]string, len(limits))
	for i, l := range limits {
		ks[i], ws[i].Reset, _ = windowOf(k, l, now, 0)
	}
	// One key at a time: on a Cluster an MGET must not span slots, and
	// these share one, but a plain GET each keeps Peek simple and rare.
	for i, key := range ks {
		v, err := r.client.Get(ctx, key).Uint64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		ws[i].Used = v
	}
	return ws, nil
}
