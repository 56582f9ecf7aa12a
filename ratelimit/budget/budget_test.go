package budget

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// clock is a settable clock shared by a test's stores.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }

func ny(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// limits: 100 a minute and 1000 a calendar month in New York.
func testLimits(loc *time.Location) []Limit {
	return []Limit{
		{Name: "minute", Amount: 100, Window: algo.Window{Count: 1, Unit: algo.Minute}},
		{Name: "month", Amount: 1000, Window: algo.Window{Count: 1, Unit: algo.Month, Calendar: true, Loc: loc}},
	}
}

// step is one call of a scenario and what it answered.
type step struct {
	Op       string
	Admitted bool
	Used     []uint64
	Expired  int
	Status   string
	Delta    int64
	Err      string
}

// scenario runs the same calls on a store, advancing its clock, and
// records every answer: the stores must agree call for call.
func scenario(t *testing.T, s Store, c *clock, loc *time.Location) []step {
	t.Helper()
	ctx := context.Background()
	ls := testLimits(loc)
	hold := 30 * time.Second
	var out []step
	res := func(key, id string, amt uint64, onExp OnExpiry) {
		o, err := s.Reserve(ctx, &Reservation{Key: key, ID: id, Amount: amt, Limits: ls, Hold: hold, OnExpiry: onExp})
		st := step{Op: fmt.Sprintf("reserve %s %s %d", key, id, amt), Admitted: o.Admitted, Expired: o.Expired}
		for _, w := range o.Windows {
			st.Used = append(st.Used, w.Used)
		}
		if err != nil {
			st.Err = err.Error()
		}
		out = append(out, st)
	}
	set := func(key, id string, actual uint64) {
		o, err := s.Settle(ctx, &Settlement{Key: key, ID: id, Actual: actual, Hold: hold})
		st := step{Op: fmt.Sprintf("settle %s %s %d", key, id, actual), Status: o.Status.String(), Delta: o.Delta}
		if err != nil {
			st.Err = err.Error()
		}
		out = append(out, st)
	}
	// 2026-11-30 23:58:10 in New York: the month ends in under two minutes.
	c.set(time.Date(2026, 11, 30, 23, 58, 10, 0, loc))
	res("a", "r1", 60, ExpireCharge) // admitted: 60/100, 60/1000
	res("a", "r2", 50, ExpireCharge) // refused by the minute
	res("b", "r1", 50, ExpireCharge) // another key: its own counters
	set("a", "r1", 20)               // refund 40
	set("a", "r1", 20)               // duplicate: nothing
	set("a", "nope", 5)              // unknown
	res("a", "r3", 80, ExpireCharge) // 20+80 = 100: admitted
	res("a", "r4", 0, ExpireCharge)  // the minute is spent: even 0 is refused
	set("a", "r3", 95)               // extra 15: 115/100 (the documented overshoot)
	c.add(time.Minute)               // next minute, same month
	res("a", "r5", 30, ExpireRefund) // orphan, refunded on expiry
	res("a", "r6", 40, ExpireCharge) // orphan, charged on expiry
	c.add(105 * time.Second)         // both expired; the month is over in NY
	res("a", "r7", 10, ExpireCharge) // new month: reconciles 2 orphans first
	set("a", "r5", 25)               // late: charged 25 onto the November counter
	set("a", "r6", 10)               // late: 30 refunded
	set("a", "r7", 10)               // settled, no difference
	res("a", "r7", 10, ExpireCharge) // the id is spent
	res("", "x", 1, ExpireCharge)    // invalid
	ws, err := s.Peek(ctx, "a", ls)
	st := step{Op: "peek a"}
	for _, w := range ws {
		st.Used = append(st.Used, w.Used)
	}
	if err != nil {
		st.Err = err.Error()
	}
	out = append(out, st)
	return out
}

func TestStoresAgree(t *testing.T) {
	loc := ny(t)
	c := newClock(time.Now())
	want := scenario(t, NewMemory(MemoryOptions{Now: c.now}), c, loc)
	// The memory store's answers, checked by hand where they matter.
	checks := map[int]step{
		0:  {Op: "reserve a r1 60", Admitted: true, Used: []uint64{60, 60}},
		1:  {Op: "reserve a r2 50", Used: []uint64{60, 60}},
		3:  {Op: "settle a r1 20", Status: "settled", Delta: -40},
		4:  {Op: "settle a r1 20", Status: "duplicate"},
		5:  {Op: "settle a nope 5", Status: "unknown"},
		6:  {Op: "reserve a r3 80", Admitted: true, Used: []uint64{100, 100}},
		7:  {Op: "reserve a r4 0", Used: []uint64{100, 100}},
		8:  {Op: "settle a r3 95", Status: "settled", Delta: 15},
		9:  {Op: "reserve a r5 30", Admitted: true, Used: []uint64{30, 145}},
		10: {Op: "reserve a r6 40", Admitted: true, Used: []uint64{70, 185}},
		11: {Op: "reserve a r7 10", Admitted: true, Used: []uint64{10, 10}, Expired: 2},
		12: {Op: "settle a r5 25", Status: "late", Delta: 25},
		13: {Op: "settle a r6 10", Status: "late", Delta: -30},
		14: {Op: "settle a r7 10", Status: "settled"},
		15: {Op: "reserve a r7 10", Err: errIDInUse.Error()},
		16: {Op: "reserve  x 1", Err: ErrInvalid.Error()},
		17: {Op: "peek a", Used: []uint64{10, 10}}, // the reused id charged nothing
	}
	for i, w := range checks {
		if d := cmp.Diff(w, want[i]); d != "" {
			t.Errorf("memory step %d (-want +got):\n%s", i, d)
		}
	}
	clients := map[string]redis.UniversalClient{"single": testenv.Redis(t)}
	if !testing.Short() {
		clients["cluster"] = testenv.RedisCluster(t)
	}
	for name, cl := range clients {
		t.Run(name, func(t *testing.T) {
			c := newClock(time.Now())
			got := scenario(t, NewRedis(cl, RedisOptions{KeyPrefix: testenv.KeyPrefix(t), Now: c.now}), c, loc)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("redis and memory stores disagree (-memory +redis):\n%s", d)
			}
		})
	}
}

// TestReplicasBound runs three replicas (each its own Redis client and
// store) reserving and settling concurrently against one budget. Exact:
// the counter ends at the sum of the admitted requests' actual costs.
// Bounded: it ends at most the amount plus the under-estimates of the
// requests admitted; with costs capped at the estimate, at most the
// amount.
func TestReplicasBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		capped bool
	}{{"capped", true}, {"under-estimates", false}} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testenv.RedisAddr(t)
			prefix := testenv.KeyPrefix(t)
			const amount, replicas, workers, requests = 5000, 3, 6, 40
			ls := []Limit{{Name: "day", Amount: amount, Window: algo.Window{Count: 1, Unit: algo.Day}}}
			var admitted, refused, actualSum, under atomic.Int64
			var wg sync.WaitGroup
			for r := range replicas {
				cl := redis.NewClient(&redis.Options{Addr: addr, PoolSize: workers})
				t.Cleanup(func() { _ = cl.Close() })
				st := NewRedis(cl, RedisOptions{KeyPrefix: prefix})
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						rng := rand.New(rand.NewPCG(uint64(r), uint64(w)))
						ctx := context.Background()
						for range requests {
							est := 10 + rng.Uint64N(90)
							actual := rng.Uint64N(est + 1)
							if !tc.capped {
								actual = rng.Uint64N(2 * est)
							}
							id := NewID()
							o, err := st.Reserve(ctx, &Reservation{Key: "k", ID: id, Amount: est, Limits: ls, Hold: time.Minute})
							if err != nil {
								t.Error(err)
								return
							}
							if !o.Admitted {
								refused.Add(1)
								continue
							}
							admitted.Add(1)
							actualSum.Add(int64(actual))
							if actual > est {
								under.Add(int64(actual - est))
							}
							so, err := st.Settle(ctx, &Settlement{Key: "k", ID: id, Actual: actual, Hold: time.Minute})
							if err != nil || so.Status != Settled {
								t.Errorf("Settle = %v, %v; want settled", so.Status, err)
							}
						}
					}()
				}
			}
			wg.Wait()
			ws, err := NewRedis(testenv.Redis(t), RedisOptions{KeyPrefix: prefix}).Peek(context.Background(), "k", ls)
			if err != nil {
				t.Fatal(err)
			}
			used := int64(ws[0].Used)
			t.Logf("admitted %d, refused %d, used %d of %d, under-estimates %d", admitted.Load(), refused.Load(), used, amount, under.Load())
			if refused.Load() == 0 {
				t.Fatalf("no request was refused: the test never reached the budget")
			}
			if used != actualSum.Load() {
				t.Errorf("used = %d; want the sum of admitted actual costs %d", used, actualSum.Load())
			}
			if bound := amount + under.Load(); used > bound {
				t.Errorf("used = %d; want at most amount + under-estimates = %d", used, bound)
			}
			if tc.capped && used > amount {
				t.Errorf("used = %d with costs capped at the estimate; want at most %d", used, amount)
			}
		})
	}
}

// TestSettleOnce: the same settlement sent by three replicas at once
// (a retried call, a duplicated message) is applied once.
func TestSettleOnce(t *testing.T) {
	addr := testenv.RedisAddr(t)
	prefix := testenv.KeyPrefix(t)
	ls := []Limit{{Name: "day", Amount: 1000, Window: algo.Window{Count: 1, Unit: algo.Day}}}
	first := NewRedis(testenv.Redis(t), RedisOptions{KeyPrefix: prefix})
	ctx := context.Background()
	if o, err := first.Reserve(ctx, &Reservation{Key: "k", ID: "once", Amount: 100, Limits: ls, Hold: time.Minute}); err != nil || !o.Admitted {
		t.Fatalf("Reserve = %+v, %v", o, err)
	}
	var settled, dup atomic.Int32
	var wg sync.WaitGroup
	for range 3 {
		cl := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = cl.Close() })
		st := NewRedis(cl, RedisOptions{KeyPrefix: prefix})
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o, err := st.Settle(ctx, &Settlement{Key: "k", ID: "once", Actual: 30, Hold: time.Minute})
				switch {
				case err != nil:
					t.Error(err)
				case o.Status == Settled:
					settled.Add(1)
				case o.Status == Duplicate:
					dup.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if settled.Load() != 1 || dup.Load() != 29 {
		t.Fatalf("settled %d, duplicate %d; want 1 and 29", settled.Load(), dup.Load())
	}
	o, err := first.Reserve(ctx, &Reservation{Key: "k", ID: NewID(), Amount: 0, Limits: ls, Hold: time.Minute})
	if err != nil || o.Windows[0].Used != 30 {
		t.Fatalf("after settling: used %+v, %v; want 30", o.Windows, err)
	}
}

func TestMemoryFull(t *testing.T) {
	m := NewMemory(MemoryOptions{MaxEntries: 4})
	ls := []Limit{{Amount: 10, Window: algo.Window{Count: 1, Unit: algo.Day}}}
	ctx := context.Background()
	var err error
	for i := 0; i < 5 && err == nil; i++ {
		_, err = m.Reserve(ctx, &Reservation{Key: fmt.Sprint(i), ID: NewID(), Amount: 1, Limits: ls, Hold: time.Minute})
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Reserve past MaxEntries = %v; want ErrFull", err)
	}
}

func TestTightest(t *testing.T) {
	ls := testLimits(time.UTC)
	now := time.Now()
	o := Outcome{Windows: []Window{{Used: 90, Reset: now.Add(time.Minute)}, {Used: 950, Reset: now.Add(time.Hour)}}}
	if got := o.Tightest(ls); got != 0 {
		t.Errorf("Tightest = %d; want 0 (10 left of the minute, 50 of the month)", got)
	}
	o.Windows[1].Used = 1000
	if got := o.Tightest(ls); got != 1 {
		t.Errorf("Tightest = %d; want 1 (the month is spent)", got)
	}
}

// The config's bound is this package's: an amount config accepts is one
// the scripts count exactly.
func TestMaxAmountMatchesConfig(t *testing.T) {
	if MaxAmount != config.MaxBudgetAmount {
		t.Fatalf("MaxAmount = %d, config.MaxBudgetAmount = %d", MaxAmount, config.MaxBudgetAmount)
	}
}

// TestReconcileBound: one reservation reconciles at most maxReconcile
// orphans, the next ones the rest; both stores alike, and the counter
// ends with every orphan refunded.
func TestReconcileBound(t *testing.T) {
	ls := []Limit{{Amount: 1000, Window: algo.Window{Count: 1, Unit: algo.Day}}}
	stores := map[string]func(c *clock) Store{
		"memory": func(c *clock) Store { return NewMemory(MemoryOptions{Now: c.now}) },
		"redis": func(c *clock) Store {
			return NewRedis(testenv.Redis(t), RedisOptions{KeyPrefix: testenv.KeyPrefix(t), Now: c.now})
		},
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			c := newClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
			s := mk(c)
			ctx := context.Background()
			for i := range maxReconcile + 4 {
				if o, err := s.Reserve(ctx, &Reservation{Key: "k", ID: fmt.Sprint("o", i), Amount: 10, Limits: ls, Hold: time.Second, OnExpiry: ExpireRefund}); err != nil || !o.Admitted {
					t.Fatalf("orphan %d: %+v, %v", i, o, err)
				}
			}
			c.add(2 * time.Second)
			var got []int
			var used uint64
			for i := range 2 {
				o, err := s.Reserve(ctx, &Reservation{Key: "k", ID: fmt.Sprint("n", i), Amount: 1, Limits: ls, Hold: time.Minute})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, o.Expired)
				used = o.Windows[0].Used
			}
			if got[0] != maxReconcile || got[1] != 4 || used != 2 {
				t.Errorf("reconciled %v, used %d; want [%d 4] and 2", got, used, maxReconcile)
			}
		})
	}
}
