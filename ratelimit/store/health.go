package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// health is a lane's record of its recent round trips (requests' and
// probes'), from which readiness is answered without a round trip of its
// own: a readiness probe must answer in milliseconds, also while Redis
// fails over, and must see what requests see (a PING answers while every
// write fails with NOREPLICAS).
type health struct {
	// used is when the lane last made a round trip (Unix ns); the prober
	// writes to a node only when no request did lately.
	used atomic.Int64

	mu       sync.Mutex
	lastOK   time.Time
	lastFail time.Time
	lastErr  error
	// ok and fail count results in window win (and win-1), whole seconds.
	win      int64
	ok, fail [2]int
}

// healthWindow is how far back the error rate looks.
const healthWindow = 2 * time.Second

func (h *health) record(err error) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.roll(now)
	if err == nil {
		h.lastOK = now
		h.ok[1]++
		return
	}
	h.lastFail, h.lastErr = now, err
	h.fail[1]++
}

// roll moves the windows to now's second.
func (h *health) roll(now time.Time) {
	w := now.Unix()
	switch {
	case w == h.win:
	case w == h.win+1:
		h.ok[0], h.fail[0] = h.ok[1], h.fail[1]
		h.ok[1], h.fail[1] = 0, 0
	default:
		h.ok, h.fail = [2]int{}, [2]int{}
	}
	h.win = w
}

// status is nil when the node served its last round trips: its breaker
// is closed, its latest result is a success, at most half of its round
// trips of the last two seconds failed, and it has a result newer than
// stale.
func (h *health) status(b *breaker, stale time.Duration) error {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.roll(now)
	last := h.lastOK
	if h.lastFail.After(last) {
		last = h.lastFail
	}
	switch {
	case !b.closed():
		return fmt.Errorf("circuit breaker open (last failure %s ago): %v", ago(now, h.lastFail), h.lastErr)
	case last.IsZero():
		return fmt.Errorf("no round trip yet")
	case now.Sub(last) > stale:
		return fmt.Errorf("no round trip for %s", ago(now, last))
	case h.lastFail.After(h.lastOK):
		return fmt.Errorf("last round trip failed %s ago: %v", ago(now, h.lastFail), h.lastErr)
	}
	ok, fail := h.ok[0]+h.ok[1], h.fail[0]+h.fail[1]
	if fail > 0 && fail >= ok {
		return fmt.Errorf("%d of %d round trips failed in the last %s: %v", fail, ok+fail, healthWindow, h.lastErr)
	}
	return nil
}

func ago(now, t time.Time) string {
	return now.Sub(t).Round(time.Millisecond).String()
}
