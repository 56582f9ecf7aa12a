package ratelimit_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

const clusterFailoverConfig = `apiVersion: gatehouse/v1
ratelimit:
  store:
    timeout: 500ms
    breaker: {failures: 3, openFor: 200ms}
routes:
  - id: closed
    match: {prefix: /c}
    ratelimit: {default: [{requests: 1000000, per: minute}], failureMode: closed}
`

// TestClusterMasterKilledThroughRLS kills one master of a Redis Cluster
// with replicas under load from two gatehouse replicas: every descriptor
// whose subject lives on a healthy master is decided (OK, with its limit)
// throughout — also in requests that carry a subject of the dead master,
// which alone is answered by its fail-closed mode — and the dead master's
// subjects are decided again once its replica is promoted, without a
// restart.
func TestClusterMasterKilledThroughRLS(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a cluster master: about 15s")
	}
	cl := testenv.StartRedisCluster(t, 3, 1, "--cluster-require-full-coverage", "no")
	cfg := loadConfig(t, clusterFailoverConfig)
	prefix := testenv.KeyPrefix(t)
	var reps []*replica
	for i := 0; i < 2; i++ {
		reps = append(reps, startReplica(t, cfg, cl.Client(), prefix))
	}
	ctx := context.Background()
	var subjects []string
	for i := 0; i < 30; i++ {
		s := "u" + strconv.Itoa(i)
		subjects = append(subjects, s)
		if _, err := ask(ctx, reps[0].client, request("gatehouse", "route", "closed", "tier", "gold", "subject", s)); err != nil {
			t.Fatal(err)
		}
	}
	// Where each subject's counter lives, from the keys themselves.
	cc := cl.Client()
	subjectOf := regexp.MustCompile(`subject=(u[0-9]+)\}`)
	master := map[string]string{}
	var mu sync.Mutex
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := m.Keys(ctx, prefix+"rl:*").Result()
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if sm := subjectOf.FindStringSubmatch(k); sm != nil {
				master[sm[1]] = m.Options().Addr
			}
		}
		return err
	})
	if err != nil || len(master) != len(subjects) {
		t.Fatalf("found the masters of %d of %d subjects: %v", len(master), len(subjects), err)
	}
	victim := master[subjects[0]]

	var healthyBad, victimDegraded, victimDecided, healthyDecided atomic.Int64
	var lastVictimDegraded atomic.Int64
	var firstBad atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ri, rep := range reps {
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(ri), uint64(w)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					a, b := subjects[r.IntN(len(subjects))], subjects[r.IntN(len(subjects))]
					req := &rlsv3.RateLimitRequest{Domain: "gatehouse", Descriptors: []*ratelimitv3.RateLimitDescriptor{
						{Entries: entries("route", "closed", "tier", "gold", "subject", a)},
						{Entries: entries("route", "closed", "tier", "gold", "subject", b)},
					}}
					resp, err := ask(ctx, rep.client, req)
					if err != nil {
						t.Errorf("ShouldRateLimit: %v", err)
						return
					}
					for i, subj := range []string{a, b} {
						st := resp.GetStatuses()[i]
						decided := st.GetCode() == rlsv3.RateLimitResponse_OK && st.GetCurrentLimit() != nil
						switch {
						case master[subj] != victim && !decided:
							if healthyBad.Add(1) == 1 {
								s := subj + ": " + st.String()
								firstBad.Store(&s)
							}
						case master[subj] != victim:
							healthyDecided.Add(1)
						case decided:
							victimDecided.Add(1)
						default:
							victimDegraded.Add(1)
							lastVictimDegraded.Store(time.Now().UnixNano())
						}
					}
				}
			}()
		}
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	waitUntil(t, "decided answers", func() bool { return healthyDecided.Load() > 100 && victimDecided.Load() > 50 })
	killed := time.Now()
	cl.Kill(cl.Node(victim))
	waitUntil(t, "the dead master's subjects answered by the failure mode", func() bool { return victimDegraded.Load() > 0 })
	// Decided again once the replica is promoted: no degraded answer for a
	// second.
	waitUntil(t, "the dead master's subjects decided again", func() bool {
		return time.Since(time.Unix(0, lastVictimDegraded.Load())) > time.Second
	})
	recovered := time.Unix(0, lastVictimDegraded.Load()).Sub(killed)
	close(stop)
	wg.Wait()
	if n := healthyBad.Load(); n > 0 {
		t.Errorf("%d descriptors of healthy masters' subjects were not decided; first: %s", n, *firstBad.Load())
	}
	t.Logf("healthy masters' descriptors: %d decided, %d not; the dead master's: %d by the failure mode, decided again %s after the kill",
		healthyDecided.Load(), healthyBad.Load(), victimDegraded.Load(), recovered.Round(time.Millisecond))
}
