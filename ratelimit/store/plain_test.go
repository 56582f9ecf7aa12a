package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/ratelimit/algo"
)

// TestPlainMatchesScript feeds the same random ops, most of them of the
// reference's kind (fixed windows, refused hits counted) and the others
// anything, to the in-process store, to a Redis store sent only the script
// and to one that sends plain INCRBY + PEXPIRE NX where it can: all three
// must answer alike, op by op, and leave every counter with an expiry.
func TestPlainMatchesScript(t *testing.T) {
	client := testenv.Redis(t)
	ctx := context.Background()
	for _, batch := range []int{1, 16} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			prefix := testenv.KeyPrefix(t)
			plain := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: batch, Pipelines: 2})
			defer plain.Close()
			scripted := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: batch, Pipelines: 2, ScriptOnly: true})
			defer scripted.Close()
			mem := NewMemory(0)
			sc := newScenario(uint64(40+batch), "")
			plainOps := 0
			for i := 0; i < 500; i++ {
				op := sc.op()
				if sc.r.IntN(4) != 0 {
					// The reference's kind: fixed windows only, refused hits counted.
					op.Refund, op.CountRefused = false, true
					op.Hits = 1 + uint64(sc.r.IntN(2))
					var fixed []LimitOp
					for _, l := range op.Limits {
						if l.Spec.Kind == algo.Fixed {
							fixed = append(fixed, l)
						}
					}
					if len(fixed) == 0 {
						continue
					}
					op.Limits = fixed
				}
				if plainOp(op) {
					plainOps++
				}
				m, p, s := cloneOp(op), keyed(cloneOp(op), prefix+"p:"), keyed(cloneOp(op), prefix+"s:")
				if err := mem.Eval(ctx, []*Op{m}); err != nil {
					t.Fatal(err)
				}
				if err := plain.Eval(ctx, []*Op{p}); err != nil {
					t.Fatalf("plain Eval: %v", err)
				}
				if err := scripted.Eval(ctx, []*Op{s}); err != nil {
					t.Fatalf("script Eval: %v", err)
				}
				for _, other := range []struct {
					name string
					op   *Op
				}{{"plain", p}, {"script", s}} {
					if other.op.Applied != m.Applied {
						t.Fatalf("op %d: memory applied=%v, %s applied=%v", i, m.Applied, other.name, other.op.Applied)
					}
					for k := range m.Limits {
						a, b := m.Limits[k].State, other.op.Limits[k].State
						if m.Limits[k].Spec.Kind == algo.GCRA {
							a.A, b.A = max(a.A, m.Limits[k].Clock.Now), max(b.A, m.Limits[k].Clock.Now)
						}
						if a != b {
							t.Fatalf("op %d limit %d (%v): memory state %+v, %s %+v", i, k, m.Limits[k].Spec.Kind, a, other.name, b)
						}
					}
				}
			}
			if plainOps < 200 {
				t.Fatalf("only %d plain ops; the test must exercise the plain path", plainOps)
			}
			if !plain.one.expireNX.Load() {
				t.Fatal("the store did not take the plain path on a Redis 7 (INFO server not read?)")
			}
			if scripted.one.expireNX.Load() {
				t.Fatal("ScriptOnly store took the plain path")
			}
			keys, err := client.Keys(ctx, prefix+"p:*").Result()
			if err != nil || len(keys) == 0 {
				t.Fatalf("keys: %v %v", len(keys), err)
			}
			for _, k := range keys {
				if ttl := client.PTTL(ctx, k).Val(); ttl <= 0 {
					t.Fatalf("%s has no expiry (PTTL %v)", k, ttl)
				}
			}
		})
	}
}

// keyed prefixes an op's keys, so that stores sharing one Redis keep
// their own counters.
func keyed(op *Op, prefix string) *Op {
	for i := range op.Limits {
		l := &op.Limits[i]
		l.Key = prefix + l.Key
		if l.PrevKey != "" {
			l.PrevKey = prefix + l.PrevKey
		}
	}
	return op
}

// TestPlainConcurrentExact: concurrent hits of the reference's kind on one
// key through plain commands — exactly the limit is answered as admitted
// (the count before plus the hit within the limit), every hit counted.
func TestPlainConcurrentExact(t *testing.T) {
	client := testenv.Redis(t)
	rs := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: 64, Pipelines: 4})
	defer rs.Close()
	key := testenv.KeyPrefix(t) + "{x}:1"
	spec := &algo.Spec{Kind: algo.Fixed, Limit: 500}
	now := time.Now().UnixMicro()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 40 {
				op := &Op{Hits: 1, CountRefused: true, Limits: []LimitOp{{Spec: spec, Clock: algo.Clock{Now: now}, Key: key, TTL: 60_000}}}
				if err := rs.Eval(context.Background(), []*Op{op}); err != nil {
					t.Error(err)
					return
				}
				if spec.Allowed(op.Limits[0].State, op.Limits[0].Clock, 1) {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if !rs.one.expireNX.Load() {
		t.Fatal("the plain path was not taken")
	}
	if n := admitted.Load(); n != 500 {
		t.Fatalf("admitted %d of 1280; want exactly 500", n)
	}
	if n, _ := client.Get(context.Background(), key).Int64(); n != 1280 {
		t.Fatalf("counter %d; want 1280 (refused hits count)", n)
	}
}

// TestPlainHealsExpiry: a counter left without an expiry (its PEXPIRE lost
// with a connection) gets one at its next hit.
func TestPlainHealsExpiry(t *testing.T) {
	client := testenv.Redis(t)
	rs := NewRedis(client, RedisOptions{Timeout: 2 * time.Second, BatchSize: 1, Pipelines: 1})
	defer rs.Close()
	ctx := context.Background()
	key := testenv.KeyPrefix(t) + "{y}:1"
	if err := client.Set(ctx, key, 3, 0).Err(); err != nil {
		t.Fatal(err)
	}
	op := &Op{Hits: 1, CountRefused: true, Limits: []LimitOp{{Spec: &algo.Spec{Kind: algo.Fixed, Limit: 10}, Key: key, TTL: 5000}}}
	if err := rs.Eval(ctx, []*Op{op}); err != nil {
		t.Fatal(err)
	}
	if op.Limits[0].State.A != 3 || !op.Applied {
		t.Fatalf("state %+v applied %v; want count 3 before, applied", op.Limits[0].State, op.Applied)
	}
	if ttl := client.PTTL(ctx, key).Val(); ttl <= 0 || ttl > 5*time.Second {
		t.Fatalf("PTTL %v; want (0, 5s]", ttl)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		info string
		want bool
	}{
		{"# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n", true},
		{"# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n", true},
		{"# Server\r\nredis_version:6.2.14\r\n", false},
		{"# Server\r\nredis_version:10.0.0\r\n", true},
		{"# Server\r\nredis_version:x\r\n", false},
		{"# Server\r\n", false},
		{"", false},
	} {
		if got := versionAtLeast(tc.info, 7); got != tc.want {
			t.Errorf("%q: %v; want %v", tc.info, got, tc.want)
		}
	}
}
