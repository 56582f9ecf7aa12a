package budget

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
	"github.com/gatehouse/gatehouse/ratelimit/store"
)

// BenchmarkAgainstCount measures, on one real redis-server in one run, a
// plain request-count limit (the rate limiter's store: one fixed window,
// one round trip) against a cost budget's reserve and reserve+settle (two
// round trips), each call waiting for the last as one request's would.
// scripts/bench/budget.sh prints the added latency as a same-run ratio.
func BenchmarkAgainstCount(b *testing.B) {
	client := testenv.Redis(b)
	prefix := testenv.KeyPrefix(b)
	ctx := context.Background()
	b.Run("count", func(b *testing.B) {
		rs := store.NewRedis(client, store.RedisOptions{Timeout: 2 * time.Second, BatchSize: 1, Pipelines: 1})
		defer rs.Close()
		spec := &algo.Spec{Kind: algo.Fixed, Limit: 1 << 40}
		w := algo.Window{Count: 1, Unit: algo.Month}
		for i := 0; b.Loop(); i++ {
			now := time.Now().UnixMicro()
			st, en := w.Bounds(now)
			op := &store.Op{Hits: 1, Limits: []store.LimitOp{{Spec: spec, Clock: algo.Clock{Now: now, Start: st, End: en},
				Key: prefix + "{count:" + fmt.Sprint(i%1000) + "}:" + fmt.Sprint(st), TTL: 60_000}}}
			if err := rs.Eval(ctx, []*store.Op{op}); err != nil {
				b.Fatal(err)
			}
		}
	})
	rs := NewRedis(client, RedisOptions{KeyPrefix: prefix})
	ls := []Limit{
		{Amount: 1 << 40, Window: algo.Window{Count: 1, Unit: algo.Month, Calendar: true, Loc: time.UTC}},
		{Amount: 1 << 40, Window: algo.Window{Count: 1, Unit: algo.Minute}},
	}
	b.Run("reserve", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			r := &Reservation{Key: fmt.Sprint("r", i%1000), ID: NewID(), Amount: 100, Limits: ls, Hold: time.Minute}
			if _, err := rs.Reserve(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reserve+settle", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			r := &Reservation{Key: fmt.Sprint("s", i%1000), ID: NewID(), Amount: 100, Limits: ls, Hold: time.Minute}
			if _, err := rs.Reserve(ctx, r); err != nil {
				b.Fatal(err)
			}
			if _, err := rs.Settle(ctx, &Settlement{Key: r.Key, ID: r.ID, Actual: 80, Hold: time.Minute}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMemory is the in-process store's reserve+settle (make run).
func BenchmarkMemory(b *testing.B) {
	m := NewMemory(MemoryOptions{MaxEntries: 1 << 22})
	ls := []Limit{{Amount: 1 << 40, Window: algo.Window{Count: 1, Unit: algo.Month, Calendar: true, Loc: time.UTC}}}
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		r := &Reservation{Key: fmt.Sprint(i % 1000), ID: NewID(), Amount: 100, Limits: ls, Hold: time.Minute}
		if _, err := m.Reserve(ctx, r); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Settle(ctx, &Settlement{Key: r.Key, ID: r.ID, Actual: 80, Hold: time.Minute}); err != nil {
			b.Fatal(err)
		}
	}
}
