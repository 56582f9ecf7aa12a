package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const exactConfig = `apiVersion: gatehouse/v1
ratelimit:
  store: {timeout: 2s}
routes:
  - id: fixed-hour
    match: {prefix: /a}
    ratelimit: {default: [{requests: 200, per: hour}]}
  - id: fixed-second
    match: {prefix: /b}
    ratelimit: {default: [{requests: 20, per: second}, {requests: 100000, per: day}]}
  - id: sliding-second
    match: {prefix: /c}
    ratelimit: {default: [{requests: 20, per: second, algorithm: sliding}]}
  - id: gcra
    match: {prefix: /d}
    ratelimit: {default: [{requests: 20, per: second, algorithm: gcra, burst: 5}]}
`

// setup is how a replica reaches Redis: each replica gets its own client,
// as separate processes would.
type setup struct {
	name      string
	newClient func() redis.UniversalClient
	// counts reads every key matching pattern (all masters of a cluster).
	counts func(t *testing.T, pattern string) map[string]int64
}

func singleSetup(t *testing.T) setup {
	addr := testenv.RedisAddr(t)
	testenv.Redis(t) // fails or skips when it does not answer
	return setup{
		name:      "single",
		newClient: func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: addr}) },
		counts: func(t *testing.T, pattern string) map[string]int64 {
			c := redis.NewClient(&redis.Options{Addr: addr})
			defer c.Close()
			return readCounts(t, c, pattern)
		},
	}
}

func clusterSetup(t *testing.T) setup {
	addrs := testenv.RedisClusterAddrs(t)
	testenv.RedisCluster(t)
	return setup{
		name:      "cluster",
		newClient: func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}) },
		counts: func(t *testing.T, pattern string) map[string]int64 {
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
			defer c.Close()
			out := map[string]int64{}
			var mu sync.Mutex
			err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
				got := readCounts(t, m, pattern)
				mu.Lock()
				defer mu.Unlock()
				for k, v := range got {
					out[k] = v
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			return out
		},
	}
}

// readCounts runs in the test and in its watcher goroutine: it reports
// errors with t.Error, never t.Fatal.
func readCounts(t *testing.T, c *redis.Client, pattern string) map[string]int64 {
	ctx := context.Background()
	out := map[string]int64{}
	iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		v, err := c.Get(ctx, iter.Val()).Int64()
		if errors.Is(err, redis.Nil) {
			continue // expired since SCAN listed it; the watcher read it before
		}
		if err != nil {
			t.Errorf("GET %s: %v", iter.Val(), err)
			continue
		}
		out[iter.Val()] = v
	}
	if err := iter.Err(); err != nil {
		t.Error(err)
	}
	return out
}

// TestReplicasNeverOverAdmit runs 3 replicas against one Redis (a single
// server, then a 3-master Cluster) and hammers one subject through all of
// them at once: for the exact algorithms no window ever admits more than
// its limit, the counters hold exactly what was admitted, and a GCRA
// bucket never admits more than its burst plus its rate.
func TestReplicasNeverOverAdmit(t *testing.T) {
	for _, mk := range []func(*testing.T) setup{singleSetup, clusterSetup} {
		s := mk(t)
		t.Run(s.name, func(t *testing.T) {
			cfg := loadConfig(t, exactConfig)
			prefix := testenv.KeyPrefix(t)
			var reps []*replica
			for i := 0; i < 3; i++ {
				rdb := s.newClient()
				t.Cleanup(func() { rdb.Close() })
				reps = append(reps, startReplica(t, cfg, rdb, prefix))
			}
			t.Run("fixed-hour", func(t *testing.T) {
				start := time.Now()
				admitted := hammer(t, reps, "fixed-hour", 1000, 0)
				if time.Now().Truncate(time.Hour) != start.Truncate(time.Hour) {
					t.Skip("the run crossed an hour boundary; its counts span two windows")
				}
				if admitted != 200 {
					t.Errorf("3 replicas admitted %d of 1000 against 200/hour; want exactly 200", admitted)
				}
				checkCounts(t, s.name, "fixed-hour", s.counts(t, prefix+"rl:{gatehouse|fixed-hour|*}:f1h:*"), 200, admitted)
			})
			for _, route := range []struct{ id, tag string }{{"fixed-second", "f1s"}, {"sliding-second", "s1s"}} {
				t.Run(route.id, func(t *testing.T) {
					// Counters of 1s windows expire a second after their
					// window: watch them during the run, keeping each
					// window's highest count.
					pattern := prefix + "rl:{gatehouse|" + route.id + "|*}:" + route.tag + ":*"
					seen := map[string]int64{}
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() {
						defer close(done)
						for {
							for k, v := range s.counts(t, pattern) {
								seen[k] = max(seen[k], v)
							}
							select {
							case <-stop:
								return
							case <-time.After(100 * time.Millisecond):
							}
						}
					}()
					admitted := hammer(t, reps, route.id, 100000, 2500*time.Millisecond)
					close(stop)
					<-done
					for k, v := range s.counts(t, pattern) {
						seen[k] = max(seen[k], v)
					}
					checkCounts(t, s.name, route.id, seen, 20, admitted)
				})
			}
			t.Run("gcra", func(t *testing.T) {
				start := time.Now()
				admitted := hammer(t, reps, "gcra", 100000, 2*time.Second)
				elapsed := time.Since(start)
				// burst 5, then one token each 50ms.
				bound := 5 + int64(elapsed/(50*time.Millisecond)) + 1
				if admitted > bound {
					t.Errorf("gcra admitted %d in %v; at most burst 5 + rate = %d", admitted, elapsed, bound)
				}
			})
		})
	}
}

// hammer sends requests for one subject on route through every replica
// (4 workers each) until n requests or d (when d > 0) and returns how many
// were admitted.
func hammer(t *testing.T, reps []*replica, route string, n int64, d time.Duration) int64 {
	t.Helper()
	return hammerReq(t, reps, request("gatehouse", "route", route, "tier", "gold", "subject", "same-subject"), n, d)
}

// checkCounts checks the counters of route's windows: each holds at most
// limit, and together they hold exactly what the replicas admitted.
func checkCounts(t *testing.T, setup, route string, counts map[string]int64, limit, admitted int64) {
	t.Helper()
	if len(counts) == 0 {
		t.Fatalf("no counters for %s", route)
	}
	var sum int64
	for k, v := range counts {
		if v > limit {
			t.Errorf("window %s holds %d > limit %d", k[strings.LastIndex(k, ":")+1:], v, limit)
		}
		sum += v
	}
	if sum != admitted {
		t.Errorf("%s: counters hold %d, replicas admitted %d; every admission must be counted once", route, sum, admitted)
	}
	t.Logf("%s/%s: %d admitted over %d windows (limit %d each)", setup, route, admitted, len(counts), limit)
}

// TestReplicasWithCacheAnswerAlike: three replicas with the local
// over-limit cache on, against one Redis (a single server, then a
// Cluster), in gatehouse's mode and in reference mode: an envoy rule
// admits exactly its limit under concurrent load; once past it, a
// check-only request (hits_addend 0) is OVER_LIMIT on every replica, as
// the reference answers (it counts every hit), whichever replica's cache
// holds the key; a gatehouse rule at its limit answers a check OK on every
// replica. The answers of the three replicas to the same check are equal.
func TestReplicasWithCacheAnswerAlike(t *testing.T) {
	file := filepath.Join(t.TempDir(), "exact.yaml")
	if err := os.WriteFile(file, []byte("domain: exact\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mk := range []func(*testing.T) setup{singleSetup, clusterSetup} {
		s := mk(t)
		for _, mode := range []string{"gatehouse", "reference"} {
			t.Run(s.name+"/"+mode, func(t *testing.T) {
				y := "apiVersion: gatehouse/v1\nratelimit:\n  store: {timeout: 2s}\n  envoyConfigs: [" + file + "]\n  localCache: {maxEntries: 1000, maxAge: 1h}\n"
				if mode == "reference" {
					y += "  reference: {}\n"
				}
				y += "routes:\n  - id: r\n    match: {prefix: /}\n    ratelimit: {default: [{requests: 5, per: hour}, {requests: 50, per: day}]}\n"
				cfg := loadConfig(t, y)
				prefix := testenv.KeyPrefix(t)
				var reps []*replica
				for i := 0; i < 3; i++ {
					rdb := s.newClient()
					t.Cleanup(func() { rdb.Close() })
					reps = append(reps, startReplica(t, cfg, rdb, prefix))
				}
				start := time.Now()
				// First one replica takes every request, through the limit
				// and past it (its cache then answers), then every replica
				// checks; then all three take concurrent load, and check.
				for phase, n := range []int64{0, 300} {
					user := fmt.Sprintf("u%d-%d", phase, time.Now().UnixNano())
					envoyReq := request("exact", "user", user)
					nativeReq := request("gatehouse", "route", "r", "tier", "gold", "subject", user)
					if n == 0 {
						for i := 0; i < 25; i++ {
							ask(context.Background(), reps[0].client, envoyReq)
							ask(context.Background(), reps[0].client, nativeReq)
						}
					} else {
						for _, req := range []*rlsv3.RateLimitRequest{envoyReq, nativeReq} {
							if admitted := hammerReq(t, reps, req, n, 0); admitted != 5 {
								t.Errorf("%s: 3 replicas admitted %d of %d against 5/hour; want exactly 5", req.Domain, admitted, n)
							}
						}
					}
					checkAlike(t, reps, envoyReq, nativeReq)
				}
				if time.Now().Truncate(time.Hour) != start.Truncate(time.Hour) {
					t.Skip("the run crossed an hour boundary")
				}
			})
		}
	}
}

// checkAlike sends a check-only request (hits_addend 0) for the envoy rule
// and the gatehouse rule to every replica: past the envoy rule's limit the
// check is OVER_LIMIT (the reference counts every hit), at the gatehouse
// rule's limit OK, and every replica answers the same.
func checkAlike(t *testing.T, reps []*replica, envoyReq, nativeReq *rlsv3.RateLimitRequest) {
	t.Helper()
	for _, tc := range []struct {
		req  *rlsv3.RateLimitRequest
		want rlsv3.RateLimitResponse_Code
	}{{envoyReq, rlsv3.RateLimitResponse_OVER_LIMIT}, {nativeReq, rlsv3.RateLimitResponse_OK}} {
		check := proto.Clone(tc.req).(*rlsv3.RateLimitRequest)
		check.Descriptors[0].HitsAddend = wrapperspb.UInt64(0)
		var first *rlsv3.RateLimitResponse
		for i, r := range reps {
			got, err := ask(context.Background(), r.client, check)
			if err != nil {
				t.Fatal(err)
			}
			if got.OverallCode != tc.want {
				t.Errorf("%s check on replica %d = %v; want %v", check.Domain, i, got.OverallCode, tc.want)
			}
			for _, st := range got.Statuses {
				st.DurationUntilReset = nil // the replicas may answer a second apart
			}
			got.ResponseHeadersToAdd = nil
			if first == nil {
				first = got
			} else if diff := cmp.Diff(first, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s check: replica %d answers unlike replica 0 (-0 +%d):\n%s", check.Domain, i, i, diff)
			}
		}
	}
}

// hammerReq sends req through every replica (4 workers each) until n
// requests or d (when d > 0) and returns how many were admitted.
func hammerReq(t *testing.T, reps []*replica, req *rlsv3.RateLimitRequest, n int64, d time.Duration) int64 {
	t.Helper()
	var sent, admitted atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, r := range reps {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for sent.Add(1) <= n && (d == 0 || time.Now().Before(deadline)) {
					resp, err := ask(context.Background(), r.client, req)
					if err != nil {
						t.Errorf("ShouldRateLimit: %v", err)
						return
					}
					if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
						admitted.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	return admitted.Load()
}
