package server

import (
	"maps"
	"slices"
	"sort"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/xds/snapshot"
)

// State-of-the-World xDS sends every listener and cluster in each
// response, but route configurations and load assignments may come a few
// at a time: Envoy and gRPC apply each one they receive and keep the
// others. go-control-plane's cache re-sends all of them whenever one
// changes (the whole route table to every node for one route), so the
// server answers these two types itself:
//
//   - a response carries only the resources whose content version differs
//     from what the stream was sent (a route change sends its host's unit,
//     an endpoint change its cluster's load assignment);
//   - a response stays under the gRPC message limit: when what changed is
//     larger, it goes in several responses, each ACKed before the next;
//     all but the last carry the version with partialSuffix, so that the
//     node counts as in sync only once it has all of it;
//   - the encodings are shared by every response (snapshot.Set.AnyOf), so
//     a push costs one copy per node, not one encoding;
//   - a node that reconnects naming the current version (to this replica
//     or another: versions are content hashes) is sent nothing.
//
// Envoy's requests are answered only once they name every resource of
// the type in the snapshot (go-control-plane's ADS rule), so that a
// listener's new route configuration is never sent before the listener.

// partialSuffix marks the version of a response that carries part of a
// change.
const partialSuffix = "/partial"

func partialType(typeURL string) bool { return snapshot.Chunked(typeURL) }

// partialWatch is an open request: State of the World (req, ch) or Delta
// (dreq, dch).
type partialWatch struct {
	id int64
	// quietAt is the type version at which the watch was found to have
	// nothing to send: its subscription does not change while it is
	// open, so a push that leaves the type's version alone is skipped
	// without looking at its resources.
	quietAt string
	// base is a snapshot of which the stream holds every resource it is
	// served, baseCount how many (base.go); nil when not known.
	base      *cachev3.Snapshot
	baseCount int
	// claim is what the watch's request claimed the node holds (a
	// reconnect naming its version).
	claim   map[string]string
	queued  bool // waiting in s.waiting for the in-flight budget
	node    string
	flavour snapshot.Flavour
	typeURL string
	sub     cachev3.Subscription
	req     *cachev3.Request
	ch      chan cachev3.Response
	dreq    *cachev3.DeltaRequest
	dch     chan cachev3.DeltaResponse
}

// createPartialWatch answers a request for a partial type at once when
// there is something to send, else keeps it until there is.
func (s *Server) createPartialWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	return s.watchPartial(&partialWatch{node: req.GetNode().GetId(), flavour: flavourOf(req.GetNode()), typeURL: req.GetTypeUrl(), sub: sub, req: req, ch: ch})
}

// createPartialDeltaWatch is createPartialWatch for Delta streams: go-
// control-plane's cache would send every changed resource in one
// message, whatever its size.
func (s *Server) createPartialDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	return s.watchPartial(&partialWatch{node: req.GetNode().GetId(), flavour: flavourOf(req.GetNode()), typeURL: req.GetTypeUrl(), sub: sub, dreq: req, dch: ch})
}

func (s *Server) watchPartial(w *partialWatch) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A request of this type from the node: it has the last response.
	freed := s.releaseLocked(w.node + "\x00" + w.typeURL)
	if freed {
		defer s.retryWaitingLocked()
	}
	s.deferredNow = false
	s.baseFromAckLocked(w)
	if s.respondPartialLocked(w) {
		return func() {}, nil
	}
	s.watchSeq++
	id := s.watchSeq
	w.id = id
	ws := s.watches[w.node]
	if ws == nil {
		ws = map[int64]*partialWatch{}
		s.watches[w.node] = ws
	}
	ws[id] = w
	if s.deferredNow {
		s.enqueueLocked(w)
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ws := s.watches[w.node]; ws != nil {
			delete(ws, id)
			if len(ws) == 0 {
				delete(s.watches, w.node)
			}
		}
	}, nil
}

// respondPartialsLocked answers a node's open watches after its snapshot
// changed. s.mu is held.
func (s *Server) respondPartialsLocked(node string) {
	ws := s.watches[node]
	ids := make([]int64, 0, len(ws))
	for id := range ws {
		ids = append(ids, id)
	}
	// In the order Envoy applies types (clusters first, routes last).
	sort.Slice(ids, func(i, j int) bool {
		a, b := slices.Index(snapshot.TypeURLs, ws[ids[i]].typeURL), slices.Index(snapshot.TypeURLs, ws[ids[j]].typeURL)
		if a != b {
			return a < b
		}
		return ids[i] < ids[j]
	})
	for _, id := range ids {
		w := ws[id]
		s.deferredNow = false
		if s.respondPartialLocked(w) {
			delete(ws, id)
		} else if s.deferredNow {
			s.enqueueLocked(w)
		}
	}
	if len(ws) == 0 {
		delete(s.watches, node)
	}
}

// respondPartialLocked sends w what its stream lacks, if anything, and
// reports whether it did. s.mu is held.
func (s *Server) respondPartialLocked(w *partialWatch) bool {
	if s.set == nil {
		return false
	}
	rs, err := s.cacheFor(w.flavour).GetSnapshot(w.node)
	if err != nil {
		return false
	}
	snap, ok := rs.(*cachev3.Snapshot)
	if !ok {
		return false
	}
	if w.dreq != nil {
		return s.respondDeltaLocked(w, snap)
	}
	typ := w.typeURL
	version := snap.GetVersion(typ)
	if version == w.quietAt {
		return false
	}
	items := snap.GetResourcesAndTTL(typ)
	vm := snap.VersionMap[typ]
	subscribed := w.sub.SubscribedResources()
	wildcard := w.sub.IsWildcard()
	isSubscribed := func(name string) bool {
		_, ok := subscribed[name]
		return ok || wildcard
	}
	served := func(name string) bool {
		if _, ok := items[name]; !ok {
			return false
		}
		return isSubscribed(name)
	}

	claimKey := w.node + "\x00" + typ
	known := w.sub.ReturnedResources()
	var changed []string
	count := 0
	if len(known) == 0 && w.claim != nil && sameMap(s.claims[claimKey], w.claim) {
		// The node claimed what it holds on this watch's request (and
		// no other stream of it claimed since): it holds all of base.
		known = w.claim
	}
	if w.base != nil && len(known) > 0 {
		// The stream holds all of base: look at what differs from it.
		d := s.diffLocked(w.base, snap, typ)
		count = w.baseCount
		for _, name := range d.added {
			if isSubscribed(name) {
				count++
			} else if w.flavour == snapshot.Envoy {
				return false // as below: Envoy has not asked for it yet
			}
		}
		for _, name := range d.removed {
			if isSubscribed(name) {
				count--
			}
		}
		for _, name := range d.changed {
			if known[name] != vm[name] && isSubscribed(name) {
				changed = append(changed, name)
			}
		}
	} else {
		s.memo.scans++
		// One pass to check Envoy asked for all, and count what it gets.
		for name := range items {
			if isSubscribed(name) {
				count++
			} else if w.flavour == snapshot.Envoy {
				// Envoy has not asked for all of them yet: the listener or
				// cluster that needs this one is still on its way.
				return false
			}
		}
		if len(known) == 0 {
			if w.req.GetResponseNonce() == "" && w.req.GetVersionInfo() == version && version != "" {
				// The first request of a new stream, from a node that
				// holds this version (it reconnected, here or to another
				// replica): it has it all. When it is served every
				// resource, that is the snapshot's version map itself
				// (shared, read-only: a claim is never written).
				known = vm
				if count != len(items) {
					known = make(map[string]string, count)
					for n := range items {
						if served(n) {
							known[n] = vm[n]
						}
					}
				}
				s.claims[claimKey] = known
				w.claim, w.base, w.baseCount = known, snap, count
				return false
			}
			known = s.claims[claimKey]
		}
		for n := range items {
			if known[n] != vm[n] && served(n) {
				changed = append(changed, n)
			}
		}
	}
	if w.req.GetVersionInfo() == version && len(changed) == 0 {
		w.quietAt = version
		if len(w.sub.ReturnedResources()) > 0 {
			// (Not when known is a claim: another stream of the node
			// may replace it.)
			w.base, w.baseCount = snap, count
		}
		return false
	}
	changed = s.sortedLocked(snap, typ, changed, len(items))
	delete(s.claims, claimKey)

	anys, size, ok := s.chunk(typ, items, changed)
	if !ok || !s.admitLocked(claimKey, size) {
		return false
	}
	respVersion := version
	if len(anys) < len(changed) {
		respVersion += partialSuffix
	}
	sent := changed[:len(anys)]
	partial := len(anys) < len(changed)
	// What the stream holds once the response is sent: known with what
	// it carries, less what the node is no longer served. When known is
	// the stream's own map, it is updated in place as the response goes
	// out (sentPartialLocked); a copy would cost every node a copy of a
	// version per resource (2,000 load assignments) for each change.
	returned := known
	var drop []string
	grows := 0
	for _, n := range sent {
		if _, ok := known[n]; !ok {
			grows++
		}
	}
	if len(known)+grows != count || partial {
		// The node no longer has what it unsubscribed from or what the
		// snapshot dropped. (Otherwise it holds every resource it is
		// served, each known or just sent, and nothing else.)
		for n := range known {
			if !served(n) {
				drop = append(drop, n)
			}
		}
	}
	if !sameMap(known, w.sub.ReturnedResources()) {
		// The first response on a new stream: known is nothing or a
		// claim, not the stream's.
		returned = make(map[string]string, count)
		for n, v := range known {
			returned[n] = v
		}
	}
	resp := &cachev3.PassthroughResponse{
		Request:           w.req,
		DiscoveryResponse: &discoveryv3.DiscoveryResponse{VersionInfo: respVersion, TypeUrl: typ, Resources: anys},
		ReturnedResources: returned,
	}
	update := &pendingSotW{resp: resp.DiscoveryResponse, returned: returned, sent: sent, versions: vm, drop: drop}
	if !partial {
		update.complete = &completeResponse{returned: returned, snap: snap, count: count, names: s.namesHash(w.req.GetResourceNames())}
	}
	if !sameMap(returned, known) {
		// A new map: fill it now, nobody else holds it.
		update.apply()
		update.sent, update.drop = nil, nil
	}
	select {
	case w.ch <- resp:
		delete(s.complete, claimKey)
		s.pending[claimKey] = update
		return true
	case <-s.ctx.Done():
		return false
	}
}

// pendingSotW is what a State-of-the-World response of a partial type
// changes in what its stream holds, applied when go-control-plane sends
// it (OnStreamResponse): until then the response may still be dropped
// (a new request of its type replaces it unsent), and the stream holds
// what it held.
type pendingSotW struct {
	resp     *discoveryv3.DiscoveryResponse
	returned map[string]string
	sent     []string
	versions map[string]string
	drop     []string
	complete *completeResponse
}

func (p *pendingSotW) apply() {
	for _, n := range p.sent {
		p.returned[n] = p.versions[n]
	}
	for _, n := range p.drop {
		delete(p.returned, n)
	}
}

// sentPartialLocked applies a State-of-the-World response of a partial
// type to what its stream holds, as it is sent. s.mu is held.
func (s *Server) sentPartialLocked(node, typeURL string, resp *discoveryv3.DiscoveryResponse) {
	key := node + "\x00" + typeURL
	p, ok := s.pending[key]
	if !ok || p.resp != resp {
		return
	}
	delete(s.pending, key)
	p.apply()
	if p.complete != nil {
		s.complete[key] = *p.complete
	}
}

// sortedLocked sorts changed, the names of a response: when it is every
// resource of the type (a first sync), the snapshot's sorted names,
// computed once and shared (read-only). s.mu is held.
func (s *Server) sortedLocked(snap *cachev3.Snapshot, typ string, changed []string, all int) []string {
	if len(changed) != all || all < 2 {
		sort.Strings(changed)
		return changed
	}
	k := diffKey{from: snap, typ: typ}
	if names, ok := s.memo.sorted[k]; ok && len(names) == all {
		return names
	}
	if len(s.memo.sorted) >= maxMemo {
		clear(s.memo.sorted)
	}
	sort.Strings(changed)
	s.memo.sorted[k] = changed
	return changed
}

// chunk returns the shared encodings of the first of changed that fit in
// one message (at least one). ok is false when one cannot be encoded.
func (s *Server) chunk(typ string, items map[string]types.ResourceWithTTL, changed []string) (anys []*anypb.Any, size int, ok bool) {
	budget := snapshot.ChunkBudget(s.set.MaxMessage())
	anys = make([]*anypb.Any, 0, len(changed))
	for _, name := range changed {
		a, err := s.set.AnyOf(items[name].Resource)
		if err != nil {
			s.log.Error("xds: encode", "type", snapshot.ShortType(typ), "name", name, "err", err)
			return nil, 0, false
		}
		n := len(a.GetValue()) + len(a.GetTypeUrl()) + len(name) + 64
		if len(anys) > 0 && size+n > budget {
			break
		}
		anys = append(anys, a)
		size += n
	}
	return anys, size, true
}

// respondDeltaLocked is respondPartialLocked for a Delta stream: the
// stream's subscription already knows, per resource, the version it was
// sent (from the response, or from the versions a reconnecting node
// named), so a node reconnecting with what it has is sent nothing.
func (s *Server) respondDeltaLocked(w *partialWatch, snap *cachev3.Snapshot) bool {
	typ := w.typeURL
	if snap.GetVersion(typ) == w.quietAt {
		return false
	}
	items := snap.GetResourcesAndTTL(typ)
	vm := snap.VersionMap[typ]
	known := w.sub.ReturnedResources()
	wildcard := w.sub.IsWildcard()
	// As for SotW: no allocation unless something changed.
	subscribed := w.sub.SubscribedResources()
	isSubscribed := func(name string) bool {
		_, ok := subscribed[name]
		return ok || wildcard
	}
	served := func(name string) bool {
		if _, ok := items[name]; !ok {
			return false
		}
		return isSubscribed(name)
	}
	var changed, removed []string
	// count is how many resources the stream is served, servedKnown how
	// many of those it holds some version of: known has others (to
	// remove) when it is larger.
	count, servedKnown := 0, 0
	if w.base != nil {
		// The stream holds all of base (base.go): look at what differs.
		d := s.diffLocked(w.base, snap, typ)
		count, servedKnown = w.baseCount, w.baseCount
		for _, name := range d.added {
			if isSubscribed(name) {
				count++
				if _, ok := known[name]; ok {
					servedKnown++
				}
			}
		}
		for _, name := range d.removed {
			if isSubscribed(name) {
				count--
				servedKnown--
			}
		}
		for _, name := range d.changed {
			if known[name] != vm[name] && isSubscribed(name) {
				changed = append(changed, name)
			}
		}
	} else {
		s.memo.scans++
		look := func(name string) {
			count++
			v, ok := known[name]
			if ok {
				servedKnown++
			}
			if !ok || v != vm[name] {
				changed = append(changed, name)
			}
		}
		if wildcard {
			for name := range items {
				look(name)
			}
		} else {
			for name := range subscribed {
				if _, ok := items[name]; ok {
					look(name)
				}
			}
		}
	}
	if len(known) > servedKnown {
		for name := range known {
			if !served(name) {
				if _, ok := items[name]; !ok || wildcard {
					removed = append(removed, name)
				}
			}
		}
	}
	first := wildcard && w.dreq.GetResponseNonce() == ""
	if len(changed) == 0 && len(removed) == 0 && !first {
		w.quietAt = snap.GetVersion(typ)
		w.base, w.baseCount = snap, count
		if w.dreq.GetResponseNonce() == "" && len(w.dreq.GetInitialResourceVersions()) > 0 {
			// A node resuming with exactly what it is served: nothing is
			// sent, so no ACK will say it is in sync; record it here
			// (as State of the World does for a request naming the
			// current version).
			s.nodes.resumed(s.m, w.node, typ, snap.GetVersion(typ))
		}
		return false
	}
	changed = s.sortedLocked(snap, typ, changed, len(items))
	sort.Strings(removed)
	anys, size, ok := s.chunk(typ, items, changed)
	if !ok || !s.admitLocked(w.node+"\x00"+typ, size) {
		return false
	}
	version := snap.GetVersion(typ)
	if len(anys) < len(changed) {
		version += partialSuffix
	}
	next := maps.Clone(known)
	if next == nil {
		next = make(map[string]string, count)
	}
	if len(known) > servedKnown {
		for n := range next {
			if !served(n) {
				delete(next, n)
			}
		}
	}
	out := make([]*discoveryv3.Resource, len(anys))
	for i, a := range anys {
		n := changed[i]
		next[n] = vm[n]
		out[i] = &discoveryv3.Resource{Name: n, Version: vm[n], Resource: a}
	}
	resp := &cachev3.DeltaPassthroughResponse{
		DeltaRequest: w.dreq,
		DeltaDiscoveryResponse: &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: version, TypeUrl: typ, Resources: out, RemovedResources: removed,
		},
		NextVersionMap: next,
	}
	select {
	case w.dch <- resp:
		key := w.node + "\x00" + typ
		if len(anys) < len(changed) {
			delete(s.complete, key)
		} else {
			s.complete[key] = completeResponse{returned: next, snap: snap, count: count}
		}
		return true
	case <-s.ctx.Done():
		return false
	}
}

// Large responses (a node's first sync of a large route table) are
// admitted within a budget of bytes in flight: each is held from its send
// until the node's next request of the type (its ACK or NACK), so that a
// thousand nodes syncing at once (a control plane restart) take turns
// instead of each holding a copy of the table in gRPC's buffers. Small
// responses (a change) are never held back.
const (
	defaultLargeResponse  = 1 << 20
	defaultInflightBudget = 64 << 20
)

// admitLocked reports whether a response of size bytes for key (node and
// type) may be sent now, and counts it in flight if it is large.
func (s *Server) admitLocked(key string, size int) bool {
	if size < s.largeResponse {
		return true
	}
	if s.inflight > 0 && s.inflight+size > s.inflightBudget {
		s.m.deferred.Inc()
		s.deferredNow = true
		return false
	}
	s.inflight += size
	s.held[key] += size
	return true
}

// releaseLocked ends what key had in flight; it reports whether there was
// any.
func (s *Server) releaseLocked(key string) bool {
	n, ok := s.held[key]
	if !ok {
		return false
	}
	s.inflight -= n
	delete(s.held, key)
	return true
}

func (s *Server) enqueueLocked(w *partialWatch) {
	if !w.queued {
		w.queued = true
		s.waiting = append(s.waiting, w)
	}
}

// retryWaitingLocked answers the watches that waited for the budget, in
// the order they came, while it lasts. Only those are looked at: a
// thousand nodes syncing cost one try per freed response, not one per
// node.
func (s *Server) retryWaitingLocked() {
	for n := len(s.waiting); n > 0 && len(s.waiting) > 0 && s.inflight < s.inflightBudget; n-- {
		w := s.waiting[0]
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		w.queued = false
		ws := s.watches[w.node]
		if ws[w.id] != w {
			continue // answered or cancelled meanwhile
		}
		s.deferredNow = false
		if s.respondPartialLocked(w) {
			delete(ws, w.id)
			if len(ws) == 0 {
				delete(s.watches, w.node)
			}
		} else if s.deferredNow {
			s.enqueueLocked(w)
			return
		}
	}
}

// claimedSub is a State-of-the-World subscription whose stream holds,
// by the version it named, every resource of the snapshot.
type claimedSub struct {
	cachev3.Subscription
	returned map[string]string
}

func (c claimedSub) ReturnedResources() map[string]string { return c.returned }

// claim tells the cache that a new stream naming the current version of
// a type holds it, so that a node reconnecting (to this replica or
// another) is not sent again what it has. go-control-plane would send it
// all: on a new stream it knows of nothing returned.
func (s *Server) claim(req *cachev3.Request, sub cachev3.Subscription) cachev3.Subscription {
	if len(sub.ReturnedResources()) > 0 || req.GetVersionInfo() == "" || req.GetResponseNonce() != "" {
		return sub
	}
	rs, err := s.cacheFor(flavourOf(req.GetNode())).GetSnapshot(req.GetNode().GetId())
	if err != nil || rs.GetVersion(req.GetTypeUrl()) != req.GetVersionInfo() {
		return sub
	}
	snap, ok := rs.(*cachev3.Snapshot)
	if !ok {
		return sub
	}
	// The cache only reads it: one map per snapshot and type serves
	// every node that reconnects holding it.
	s.mu.Lock()
	defer s.mu.Unlock()
	k := diffKey{from: snap, to: snap, typ: req.GetTypeUrl()}
	returned, ok := s.memo.claims[k]
	if !ok {
		if len(s.memo.claims) >= maxMemo {
			clear(s.memo.claims)
		}
		items := snap.GetResourcesAndTTL(req.GetTypeUrl())
		returned = make(map[string]string, len(items))
		for name := range items {
			returned[name] = req.GetVersionInfo()
		}
		s.memo.claims[k] = returned
	}
	return claimedSub{Subscription: sub, returned: returned}
}
