package server

import (
	"context"
	"strings"
	"sync"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/xds/snapshot"
)

// A node's first sync is its whole config: at 20,000 routes and 2,000
// clusters, megabytes per node, encoded into gRPC's buffers and held
// there until the node reads them. A thousand nodes connecting at once (a
// control plane restart) would hold a thousand copies: gigabytes. So at
// most syncSlots nodes sync at once; the others' first request waits for
// a slot (their stream is open, nothing is lost). A slot is freed when
// its node ACKs or NACKs its route configurations (the last type Envoy
// fetches), or its listeners when it has no routes, or its stream ends,
// or after syncSlotTimeout whatever happens. A node that reconnects
// naming what it holds is sent little: its slot is freed as soon as its
// routes' request is answered or it has nothing to ACK (the timeout).
const (
	defaultSyncSlots = 32
	syncSlotTimeout  = 30 * time.Second
)

type syncSlot struct {
	once  sync.Once
	free  func()
	timer *time.Timer
}

func (sl *syncSlot) release() {
	if sl != nil {
		sl.once.Do(func() {
			sl.timer.Stop()
			sl.free()
		})
	}
}

// acquireSync waits for a sync slot for a stream's first request.
func (s *Server) acquireSync(ctx context.Context) (*syncSlot, error) {
	select {
	case s.syncing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	sl := &syncSlot{free: func() { <-s.syncing }}
	sl.timer = time.AfterFunc(syncSlotTimeout, sl.release)
	return sl, nil
}

// syncDone reports whether an ACK or NACK of typeURL at version ends a
// node's first sync.
func (s *Server) syncDone(n *nodeState, typeURL, version string) bool {
	if strings.HasSuffix(version, partialSuffix) {
		return false
	}
	switch typeURL {
	case resourcev3.RouteType:
		return true
	case resourcev3.ListenerType:
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(snapshot.Names(n.snap, resourcev3.RouteType)) == 0
	}
	return false
}
