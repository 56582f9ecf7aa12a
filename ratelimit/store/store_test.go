package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-redis' connection pool reaper of clients closed in cleanup.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		// go-redis' redial of a dead node (a killed cluster master) sleeps
		// out its backoff after its client closed.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
	)
}

// scenario builds ops over a small key space with a fake clock, so that
// two stores fed the same ops must answer alike.
type scenario struct {
	r      *rand.Rand
	now    int64
	prefix string
	specs  []algo.Spec
	wins   []algo.Window
}

func newScenario(seed uint64, prefix string) *scenario {
	return &scenario{
		r:      rand.New(rand.NewPCG(seed, seed+1)),
		now:    1_700_000_000_000_000,
		prefix: prefix,
		specs: []algo.Spec{
			{Kind: algo.Fixed, Limit: 5},
			{Kind: algo.Sliding, Limit: 7},
			algo.NewGCRA(10, 4, 1_000_000),
			{Kind: algo.Fixed, Limit: 3},
		},
		wins: []algo.Window{{Count: 1, Unit: algo.Second}, {Count: 1, Unit: algo.Second}, {}, {Count: 2, Unit: algo.Second}},
	}
}

func (s *scenario) op() *Op {
	s.now += s.r.Int64N(150_000)
	subj := s.r.IntN(4)
	op := &Op{Hits: uint64(s.r.IntN(3)), CountRefused: s.r.IntN(5) == 0}
	if s.r.IntN(6) == 0 {
		op.Refund, op.CountRefused = true, false
	}
	for i := range s.specs {
		if s.r.IntN(2) == 0 && !(i == len(s.specs)-1 && len(op.Limits) == 0) {
			continue
		}
		spec := &s.specs[i]
		base := fmt.Sprintf("%s{u%d}:l%d", s.prefix, subj, i)
		l := LimitOp{Spec: spec, Clock: algo.Clock{Now: s.now}, TTL: 1}
		if spec.Kind == algo.GCRA {
			l.Key = base
		} else {
			st, en := s.wins[i].Bounds(s.now)
			ps, _ := s.wins[i].Bounds(st - 1)
			l.Clock.Start, l.Clock.End = st, en
			l.Key = fmt.Sprintf("%s:%d", base, st)
			l.PrevKey = fmt.Sprintf("%s:%d", base, ps)
			// Long TTLs: the fake clock runs faster than Redis' own.
			l.TTL = 3_600_000
		}
		op.Limits = append(op.Limits, l)
	}
	return op
}

func cloneOp(op *Op) *Op {
	c := *op
	c.Limits = append([]LimitOp(nil), op.Limits...)
	return &c
}

// TestRedisMatchesMemory feeds the same random ops (refunds among them) to
// the in-process store and to the Lua script on a real redis-server (and a
// Redis Cluster) and requires the same outcome, op by op, and that both
// agree with algo.
func TestRedisMatchesMemory(t *testing.T) {
	clients := map[string]redis.UniversalClient{"single": testenv.Redis(t)}
	if !testing.Short() {
		clients["cluster"] = testenv.RedisCluster(t)
	}
	for name, client := range clients {
		t.Run(name, func(t *testing.T) {
			for _, batch := range []int{1, 16} {
				rs := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: batch, Pipelines: 2})
				mem := NewMemory(0)
				sc := newScenario(uint64(batch), testenv.KeyPrefix(t))
				ctx := context.Background()
				for i := 0; i < 600; i++ {
					// A few ops per Eval, as one request of several descriptors.
					n := 1 + sc.r.IntN(3)
					var a, b []*Op
					for j := 0; j < n; j++ {
						op := sc.op()
						a, b = append(a, op), append(b, cloneOp(op))
					}
					if err := mem.Eval(ctx, a); err != nil {
						t.Fatal(err)
					}
					if err := rs.Eval(ctx, b); err != nil {
						t.Fatalf("redis Eval: %v", err)
					}
					for j := range a {
						if a[j].Applied != b[j].Applied {
							t.Fatalf("op %d.%d: memory applied=%v, redis applied=%v", i, j, a[j].Applied, b[j].Applied)
						}
						allowed := true
						for k := range a[j].Limits {
							la, lb := a[j].Limits[k], b[j].Limits[k]
							if la.Spec.Kind == algo.GCRA {
								// An expired bucket (memory, on the fake clock) and a
								// past arrival time (Redis, on its own) are one state.
								la.State.A, lb.State.A = max(la.State.A, la.Clock.Now), max(lb.State.A, lb.Clock.Now)
							}
							if la.State != lb.State {
								t.Fatalf("op %d.%d limit %d (%v): memory state %+v, redis %+v", i, j, k, la.Spec.Kind, la.State, lb.State)
							}
							allowed = allowed && la.Spec.Allowed(la.State, la.Clock, a[j].Hits)
						}
						if want := allowed || a[j].CountRefused || a[j].Refund; a[j].Applied != want {
							t.Fatalf("op %d.%d: applied=%v; algo says %v", i, j, a[j].Applied, want)
						}
					}
				}
				rs.Close()
			}
		})
	}
}

// TestRedisConcurrentExact runs many concurrent Evals through the batcher
// against one key and checks that exactly the limit is admitted.
func TestRedisConcurrentExact(t *testing.T) {
	client := testenv.Redis(t)
	rs := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: 64, Pipelines: 4})
	defer rs.Close()
	prefix := testenv.KeyPrefix(t)
	spec := &algo.Spec{Kind: algo.Fixed, Limit: 500}
	now := time.Now().UnixMicro()
	w := algo.Window{Count: 1, Unit: algo.Hour}
	st, en := w.Bounds(now)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				op := &Op{Hits: 1, Limits: []LimitOp{{Spec: spec, Clock: algo.Clock{Now: now, Start: st, End: en}, Key: prefix + "{x}:" + fmt.Sprint(st), TTL: 60_000}}}
				if err := rs.Eval(context.Background(), []*Op{op}); err != nil {
					t.Error(err)
					return
				}
				if op.Applied {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n != 500 {
		t.Fatalf("admitted %d of 1280; want exactly 500", n)
	}
}

// TestRedisNoScript: after SCRIPT FLUSH (as after a Redis restart) the
// store loads the script again.
func TestRedisNoScript(t *testing.T) {
	client := testenv.Redis(t)
	rs := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: 8, Pipelines: 1})
	defer rs.Close()
	sc := newScenario(9, testenv.KeyPrefix(t))
	for i := 0; i < 3; i++ {
		if err := client.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rs.Eval(context.Background(), []*Op{sc.op()}); err != nil {
			t.Fatalf("Eval after SCRIPT FLUSH: %v", err)
		}
	}
}

// TestRedisDownBreaker kills a private redis-server: Evals fail with
// ErrUnavailable, the breaker opens and answers without trying, and once
// the server is back the store recovers without a restart.
func TestRedisDownBreaker(t *testing.T) {
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	rs := NewRedis(client, RedisOptions{Timeout: 200 * time.Millisecond, BatchSize: 4, Pipelines: 1,
		// openFor is long against the few calls between the breaker opening
		// and the checks that it is open, so a busy machine cannot flake them.
		Breaker: BreakerOptions{Failures: 3, OpenFor: 3 * time.Second, Probes: 1}})
	defer rs.Close()
	sc := newScenario(10, testenv.KeyPrefix(t))
	ctx := context.Background()
	if err := rs.Eval(ctx, []*Op{sc.op()}); err != nil {
		t.Fatalf("Eval with redis up: %v", err)
	}
	srv.Stop()
	for i := 0; i < 3; i++ {
		if err := rs.Eval(ctx, []*Op{sc.op()}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Eval %d with redis down = %v; want ErrUnavailable", i, err)
		}
	}
	if !rs.one.breaker.open() {
		t.Fatalf("breaker still closed after 3 failures")
	}
	if rs.one.breaker.allow() {
		t.Fatalf("open breaker lets calls through before openFor")
	}
	if err := rs.Eval(ctx, []*Op{sc.op()}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Eval with breaker open = %v; want ErrUnavailable", err)
	}
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := rs.Eval(ctx, []*Op{sc.op()})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rs.one.breaker.open() {
		t.Fatalf("breaker open after a successful round trip")
	}
}

func TestRedisClose(t *testing.T) {
	client := testenv.Redis(t)
	rs := NewRedis(client, RedisOptions{Timeout: time.Second, BatchSize: 8, Pipelines: 2})
	rs.Close()
	sc := newScenario(12, testenv.KeyPrefix(t))
	if err := rs.Eval(context.Background(), []*Op{sc.op()}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Eval after Close = %v; want ErrClosed", err)
	}
	rs.Close() // twice is fine
}

func TestMemoryFull(t *testing.T) {
	m := NewMemory(memShards) // one key per shard
	spec := &algo.Spec{Kind: algo.Fixed, Limit: 10}
	var full bool
	for i := 0; i < 500 && !full; i++ {
		op := &Op{Hits: 1, Limits: []LimitOp{{Spec: spec, Clock: algo.Clock{Now: 1, Start: 0, End: 1e9}, Key: fmt.Sprintf("{k%d}", i), TTL: 1000}}}
		if err := m.Eval(context.Background(), []*Op{op}); errors.Is(err, ErrFull) {
			full = true
		}
	}
	if !full {
		t.Fatalf("a store of %d keys took 500 keys", memShards)
	}
	// Expired keys make room again.
	op := &Op{Hits: 1, Limits: []LimitOp{{Spec: spec, Clock: algo.Clock{Now: 2e9, Start: 2e9, End: 3e9}, Key: "{late}", TTL: 1000}}}
	if err := m.Eval(context.Background(), []*Op{op}); err != nil {
		t.Fatalf("Eval after expiry = %v", err)
	}
}

func TestOverLimitCache(t *testing.T) {
	c := NewOverLimitCache(64)
	if c.Get("a", 10) != nil {
		t.Fatal("empty cache answers")
	}
	e := &CacheEntry{Until: 100, Rule: 3, States: []algo.State{{A: 7}}}
	c.Add("a", e, 10)
	if got := c.Get("a", 50); got != e {
		t.Errorf("Get(a, 50) = %v; want the entry", got)
	}
	if got := c.Get("a", 100); got != nil {
		t.Errorf("Get(a, 100) = %v; want nil (expired)", got)
	}
	c.Remove("a")
	if c.Get("a", 50) != nil || c.Len() != 0 {
		t.Errorf("after Remove: Get = %v, Len = %d", c.Get("a", 50), c.Len())
	}
	for i := 0; i < 1000; i++ {
		c.Add(fmt.Sprint(i), &CacheEntry{Until: 1000}, 10)
	}
	if c.Len() > 64 {
		t.Errorf("cache of 64 holds %d", c.Len())
	}
	var nilCache *OverLimitCache
	nilCache.Add("a", e, 1)
	nilCache.Remove("a")
	if nilCache.Get("a", 2) != nil {
		t.Error("nil cache answers")
	}
}

// TestRefundAgreesWithAlgo: after a refund, both stores hold exactly the
// state algo.Spec.Refund computes, for every algorithm, never below zero.
func TestRefundAgreesWithAlgo(t *testing.T) {
	stores := map[string]Store{"memory": NewMemory(0)}
	rs := NewRedis(testenv.Redis(t), RedisOptions{Timeout: 2 * time.Second, BatchSize: 4, Pipelines: 1})
	defer rs.Close()
	stores["redis"] = rs
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			prefix := testenv.KeyPrefix(t)
			now := time.Now().UnixMicro()
			w := algo.Window{Count: 1, Unit: algo.Hour}
			start, end := w.Bounds(now)
			gcra := algo.NewGCRA(10, 5, 3_600_000_000)
			specs := []*algo.Spec{{Kind: algo.Fixed, Limit: 5}, {Kind: algo.Sliding, Limit: 5}, &gcra}
			mk := func(hits uint64, refund bool) *Op {
				op := &Op{Hits: hits, Refund: refund}
				for i, sp := range specs {
					l := LimitOp{Spec: sp, Clock: algo.Clock{Now: now, Start: start, End: end}, Key: fmt.Sprintf("%s{r}:l%d:%d", prefix, i, start), TTL: 60_000}
					if sp.Kind == algo.Sliding {
						l.PrevKey = fmt.Sprintf("%s{r}:l%d:%d", prefix, i, start-3_600_000_000)
					}
					op.Limits = append(op.Limits, l)
				}
				return op
			}
			read := func() []algo.State {
				op := mk(0, false)
				if err := st.Eval(context.Background(), []*Op{op}); err != nil {
					t.Fatal(err)
				}
				var out []algo.State
				for _, l := range op.Limits {
					out = append(out, l.State)
				}
				return out
			}
			for _, step := range []struct {
				hits   uint64
				refund bool
			}{{3, false}, {1, true}, {2, false}, {9, true}, {4, false}, {2, true}} {
				before := read()
				if err := st.Eval(context.Background(), []*Op{mk(step.hits, step.refund)}); err != nil {
					t.Fatal(err)
				}
				after := read()
				for i, sp := range specs {
					want := before[i]
					if step.refund {
						want = sp.Refund(want, algo.Clock{Now: now, Start: start, End: end}, step.hits)
					} else {
						want = sp.Apply(want, algo.Clock{Now: now, Start: start, End: end}, step.hits)
					}
					got := after[i]
					if sp.Kind == algo.GCRA {
						// A deleted bucket (0) and one at now are both full.
						want.A, got.A = max(want.A, now), max(got.A, now)
					}
					if got != want {
						t.Fatalf("%v after %+v: state %+v; want %+v", sp.Kind, step, got, want)
					}
					if got.A < 0 || got.B < 0 {
						t.Fatalf("%v after %+v: a counter below zero: %+v", sp.Kind, step, got)
					}
				}
			}
		})
	}
}
