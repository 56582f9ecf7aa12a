package server

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/xds/snapshot"
)

// Every ACK moves its node on (assignLocked): the snapshot it is sent
// next depends on what it accepted (snapshot.Stage), and that needs the
// clusters its listeners and routes use. Those are O(config) to compute
// (2,000 clusters at the scale) and a thousand nodes ACK each
// change, but they take few distinct values: every node of a group holds
// the same shared snapshots. So both are memoized, for the current set,
// by the identity of what they are computed from, and a node's ACK costs
// a few map lookups. A staged snapshot is shared too, by every node in
// the same stage, so that unchanged nodes compare by pointer.

// maxMemo bounds each memo: past it, it is cleared (nodes far behind on
// older sets could otherwise keep adding keys).
const maxMemo = 4096

// needsKey names the clusters a snapshot's listeners and routes use:
// the set that built it and its route configurations' content version.
type needsKey struct {
	set    *snapshot.Set
	routes string
}

// stageKey is every input of snapshot.Stage, by identity. The accepted
// clusters in use are a slice shared from the needs memo: its first
// element's address and its length name it.
type stageKey struct {
	next                                   *cachev3.Snapshot
	clusters, endpoints, listeners, routes *cachev3.Snapshot
	inUse                                  *string
	inUseLen                               int
}

type stageMemo struct {
	needs map[needsKey][]string
	stage map[stageKey]*cachev3.Snapshot
	// diffs are the differences between snapshots, per type (base.go).
	diffs map[diffKey]*typeDiff
	// claims are the held versions a reconnecting node claims of a
	// snapshot's type, for go-control-plane's cache (partial.go claim).
	claims map[diffKey]map[string]string
	// sorted are the sorted names of a snapshot's type (partial.go).
	sorted map[diffKey][]string
	// computed counts the O(config) computations (a miss of the needs
	// or stage memo), scans the watches that looked at every resource
	// of their type (no base), for tests.
	computed, scans int
}

func newStageMemo() *stageMemo {
	return &stageMemo{needs: map[needsKey][]string{}, stage: map[stageKey]*cachev3.Snapshot{}, diffs: map[diffKey]*typeDiff{}, claims: map[diffKey]map[string]string{}, sorted: map[diffKey][]string{}}
}

// needsLocked returns the clusters that snap's listeners and routes use
// under set, sorted; the slice is shared and read-only. s.mu is held.
func (s *Server) needsLocked(set *snapshot.Set, snap *cachev3.Snapshot) []string {
	if set == nil || snap == nil {
		return nil
	}
	k := needsKey{set: set, routes: snap.GetVersion(resourcev3.RouteType)}
	if out, ok := s.memo.needs[k]; ok {
		return out
	}
	if len(s.memo.needs) >= maxMemo {
		clear(s.memo.needs)
	}
	s.memo.computed++
	out := set.Resources.ClustersOf(snapshot.Names(snap, resourcev3.RouteType))
	s.memo.needs[k] = out
	return out
}

// stageLocked is snapshot.Stage(next, needs of next, acc), shared by
// every node with the same inputs. s.mu is held.
func (s *Server) stageLocked(next *cachev3.Snapshot, acc snapshot.Accepted) *cachev3.Snapshot {
	k := stageKey{next: next, clusters: acc.Clusters, endpoints: acc.Endpoints, listeners: acc.Listeners, routes: acc.Routes, inUseLen: len(acc.InUse)}
	if len(acc.InUse) > 0 {
		k.inUse = &acc.InUse[0]
	}
	if out, ok := s.memo.stage[k]; ok {
		return out
	}
	if len(s.memo.stage) >= maxMemo {
		clear(s.memo.stage)
	}
	s.memo.computed++
	out := snapshot.Stage(next, s.needsLocked(s.set, next), acc)
	s.memo.stage[k] = out
	return out
}

// resetMemoLocked drops what was memoized for older sets. s.mu is held.
func (s *Server) resetMemoLocked() {
	clear(s.memo.needs)
	clear(s.memo.stage)
	clear(s.memo.diffs)
	clear(s.memo.claims)
	clear(s.memo.sorted)
}
