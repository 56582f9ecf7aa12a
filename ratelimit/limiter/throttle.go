package limiter

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// throttle rate-limits a log line to one a second, saying how many were
// suppressed in between.
type throttle struct {
	last       atomic.Int64
	suppressed atomic.Int64
}

func (t *throttle) log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	now := time.Now().UnixNano()
	last := t.last.Load()
	if now-last < int64(time.Second) || !t.last.CompareAndSwap(last, now) {
		t.suppressed.Add(1)
		return
	}
	if n := t.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	log.Log(context.Background(), level, msg, args...)
}
