package server

import (
	"hash/maphash"
	"reflect"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// A push used to look at every resource of a type for every node: at
// 2,000 load assignments and 1,000 nodes, an endpoint change compared two
// million versions under s.mu (and the node's ACK, opening the next
// watch, as many again), where a route change (50 route configurations)
// compared fifty thousand. So a watch may have a base: a snapshot of
// which its stream holds every resource it is served, at that snapshot's
// versions. A push then looks only at the resources whose version differs
// between the base and the new snapshot (typeDiff, computed once per pair
// of snapshots and shared by every node), and the cost per node is that
// of the change.
//
// A watch gets its base when a full look finds nothing to send, or, at
// once, when its request ACKs the stream's last complete response with
// the subscription unchanged: the stream then holds exactly what that
// response left it (completeResponse).

// typeDiff is what differs in one type between two snapshots: changed are
// the names whose version differs (added among them), removed those only
// the first has.
type typeDiff struct {
	changed, added, removed []string
}

type diffKey struct {
	from, to *cachev3.Snapshot
	typ      string
}

// completeResponse is a node's last response of a type that left its
// stream holding every resource it is served of snap (not a part).
type completeResponse struct {
	// returned is the map the response gave the stream as what it holds
	// (by identity: the stream's subscription keeps it).
	returned map[string]string
	snap     *cachev3.Snapshot
	count    int
	// names is the hash of the State-of-the-World request's resource
	// names it answered (an ACK naming others changed the subscription).
	names uint64
}

// diffLocked returns what differs in typ from one snapshot to another.
// s.mu is held.
func (s *Server) diffLocked(from, to *cachev3.Snapshot, typ string) *typeDiff {
	if from == to {
		return &typeDiff{}
	}
	k := diffKey{from: from, to: to, typ: typ}
	if d, ok := s.memo.diffs[k]; ok {
		return d
	}
	if len(s.memo.diffs) >= maxMemo {
		clear(s.memo.diffs)
	}
	d := &typeDiff{}
	old, cur := from.VersionMap[typ], to.VersionMap[typ]
	for name, v := range cur {
		if ov, ok := old[name]; !ok {
			d.changed = append(d.changed, name)
			d.added = append(d.added, name)
		} else if ov != v {
			d.changed = append(d.changed, name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			d.removed = append(d.removed, name)
		}
	}
	s.memo.diffs[k] = d
	return d
}

// sameMap reports whether a and b are the same map (not equal ones).
func sameMap(a, b map[string]string) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// namesHash hashes a request's resource names, in order.
func (s *Server) namesHash(names []string) uint64 {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// baseFromAckLocked gives a new watch the base its stream's last complete
// response left, when its request ACKs that response without changing
// the subscription; otherwise it forgets the response. s.mu is held.
func (s *Server) baseFromAckLocked(w *partialWatch) {
	key := w.node + "\x00" + w.typeURL
	c, ok := s.complete[key]
	if !ok {
		return
	}
	eligible := sameMap(w.sub.ReturnedResources(), c.returned)
	if w.dreq != nil {
		eligible = eligible && w.dreq.GetResponseNonce() != "" && w.dreq.GetErrorDetail() == nil &&
			len(w.dreq.GetResourceNamesSubscribe()) == 0 && len(w.dreq.GetResourceNamesUnsubscribe()) == 0
	} else {
		eligible = eligible && w.req.GetResponseNonce() != "" && w.req.GetErrorDetail() == nil &&
			w.req.GetVersionInfo() == c.snap.GetVersion(w.typeURL) && s.namesHash(w.req.GetResourceNames()) == c.names
	}
	if !eligible {
		delete(s.complete, key)
		return
	}
	w.base, w.baseCount = c.snap, c.count
}
