package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Readiness comes from the results of real round trips (requests'), kept
// by each lane, so that Ready answers at once and says what requests see.
// A node no request reached lately is written to by the prober instead
// (a DEL of a key that never exists, followed by the WAIT of the Wait
// option), through the node's
// breaker: a replica taken out of rotation still learns that Redis came
// back, and a write that Redis refuses (NOREPLICAS, READONLY) shows.

// probeLoop probes every ProbeEvery until Close.
func (r *Redis) probeLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.ProbeEvery)
	defer t.Stop()
	for {
		r.probeOnce()
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// probeOnce probes each node that made no round trip for ProbeEvery; for
// a Cluster it also reads the topology (which masters serve slots).
func (r *Redis) probeOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout+r.opts.Wait.Timeout)
	defer cancel()
	if r.one != nil {
		r.probe(ctx, r.one, r.opts.KeyPrefix+"probe:ratelimit")
		return
	}
	c := r.cl
	var mu sync.Mutex
	var masters []string
	err := c.cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		addr := m.Options().Addr
		mu.Lock()
		masters = append(masters, addr)
		mu.Unlock()
		ln, err := c.lane(addr)
		if err != nil {
			return err
		}
		key, err := c.probeKey(ctx, r.opts.KeyPrefix, addr)
		if err != nil {
			return err
		}
		r.probe(ctx, ln, key)
		return nil
	})
	if len(masters) == 0 && err != nil {
		err = fmt.Errorf("cluster topology: %w", err)
		c.stateErr.Store(&err)
		return
	}
	sort.Strings(masters)
	c.masters.Store(&masters)
	c.stateErr.Store(nil)
	c.retire(masters)
}

// laneIdle is how long a lane of a node that is no master any more (a
// failed-over master, a node gone) is kept before it is closed (a
// variable for tests).
var laneIdle = 10 * time.Second

// retire closes the lanes of nodes that serve no slots and that no
// request used for laneIdle, and drops their metrics: nodes come and go
// (failovers, new pod addresses), their lanes must not pile up, nor their
// breakers' last state stay on the dashboards.
func (c *cluster) retire(masters []string) {
	c.mu.Lock()
	var gone []*lane
	for addr, ln := range c.lanes {
		if i := sort.SearchStrings(masters, addr); i < len(masters) && masters[i] == addr {
			continue
		}
		if time.Since(time.Unix(0, ln.health.used.Load())) < laneIdle {
			continue
		}
		delete(c.lanes, addr)
		gone = append(gone, ln)
	}
	c.mu.Unlock()
	for _, ln := range gone {
		// A call that took the lane just before it left the map is
		// answered ErrClosed (the failure mode); a new one makes a new
		// lane. Idle for laneIdle, it has no round trip to wait for.
		ln.close()
		c.m.forgetNode(ln.addr)
	}
}

// probeKey is a key whose slot addr serves, by go-redis' view of the
// cluster (no round trip).
func (c *cluster) probeKey(ctx context.Context, prefix, addr string) (string, error) {
	for i := 0; i < 4096; i++ {
		key := prefix + "probe:ratelimit:{" + strconv.Itoa(i) + "}"
		m, err := c.cc.MasterForKey(ctx, key)
		if err != nil {
			return "", err
		}
		if m.Options().Addr == addr {
			return key, nil
		}
	}
	return "", fmt.Errorf("no slot of %s found", addr)
}

// probe writes key on ln's node unless a request made a round trip there
// within ProbeEvery. The write is a round trip like the requests': through
// the breaker, bounded by Timeout, recorded in the lane's health.
func (r *Redis) probe(ctx context.Context, ln *lane, key string) {
	if time.Since(time.Unix(0, ln.health.used.Load())) < r.opts.ProbeEvery {
		return
	}
	if !ln.breaker.allow() {
		return
	}
	sent := false
	err := ln.breaker.do(func() error {
		sent = true
		if err := ln.warmUp(ctx); err != nil {
			return err
		}
		pipe := ln.client.Pipeline()
		// DEL of a key that never exists: a write, refused as the
		// requests' scripts are (NOREPLICAS, READONLY, CLUSTERDOWN), that
		// leaves nothing behind.
		set := pipe.Del(ctx, key)
		var wait *redis.Cmd
		if r.opts.Wait.Replicas > 0 {
			wait = waitCmd(ctx, pipe, r.opts.Wait)
		}
		_, _ = pipe.Exec(ctx)
		if err := set.Err(); err != nil {
			return err
		}
		if wait != nil {
			return waited(wait, r.opts.Wait.Replicas)
		}
		return nil
	})
	if !sent {
		return
	}
	ln.health.used.Store(time.Now().UnixNano())
	ln.health.record(err)
	r.m.probe(err)
}

// Ready reports, without a round trip, whether the store serves: for each
// node (each master serving slots, for a Cluster), its breaker is closed
// and its recent round trips succeeded. It is readiness: an error names
// the failing nodes.
func (r *Redis) Ready() error {
	if r.closed.Load() {
		return ErrClosed
	}
	stale := 4*r.opts.ProbeEvery + r.opts.Timeout + r.opts.Wait.Timeout
	if r.one != nil {
		if err := r.one.health.status(r.one.breaker, stale); err != nil {
			return fmt.Errorf("redis %s: %w", r.one.addr, err)
		}
		return nil
	}
	if r.cl == nil {
		return errClient
	}
	if p := r.cl.stateErr.Load(); p != nil {
		return *p
	}
	mp := r.cl.masters.Load()
	if mp == nil {
		return errors.New("redis cluster: topology not read yet")
	}
	lanes := r.cl.lanesNow()
	var bad []string
	for _, addr := range *mp {
		ln := lanes[addr]
		if ln == nil {
			bad = append(bad, addr+": not probed yet")
			continue
		}
		if err := ln.health.status(ln.breaker, stale); err != nil {
			bad = append(bad, addr+": "+err.Error())
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("redis cluster: %d of %d masters failing: %s", len(bad), len(*mp), strings.Join(bad, "; "))
	}
	return nil
}
