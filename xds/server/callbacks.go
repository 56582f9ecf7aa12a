package server

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/xds/snapshot"
)

const (
	protoSotW  = "sotw"
	protoDelta = "delta"
)

// callbacks follow every stream: who is on it, what it was sent, and
// what it accepted or rejected. go-control-plane calls them synchronously
// on the stream's goroutine, before it acts on the request.
type callbacks struct{ s *Server }

func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.nodes.open(ctx, streamKey{protoSotW, id}, peerOf(ctx))
	c.s.m.streams.WithLabelValues(protoSotW).Inc()
	return nil
}

func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	c.s.nodes.open(ctx, streamKey{protoDelta, id}, peerOf(ctx))
	c.s.m.streams.WithLabelValues(protoDelta).Inc()
	return nil
}

func (c *callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	c.s.m.streams.WithLabelValues(protoSotW).Dec()
	c.s.closed(streamKey{protoSotW, id})
}

func (c *callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.m.streams.WithLabelValues(protoDelta).Dec()
	c.s.closed(streamKey{protoDelta, id})
}

// closed forgets a node's snapshot when its last stream ends, so that
// the caches hold only connected nodes.
func (s *Server) closed(k streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes.close(k)
	if n == nil {
		return
	}
	s.cacheFor(n.flavour).ClearSnapshot(n.node.GetId())
	freed := false
	for _, typ := range []string{resourcev3.RouteType, resourcev3.EndpointType} {
		delete(s.claims, n.node.GetId()+"\x00"+typ)
		delete(s.complete, n.node.GetId()+"\x00"+typ)
		delete(s.pending, n.node.GetId()+"\x00"+typ)
		freed = s.releaseLocked(n.node.GetId()+"\x00"+typ) || freed
	}
	if freed {
		s.retryWaitingLocked()
	}
	n.snap, n.set, n.acc = nil, nil, snapshot.Accepted{}
	s.nodes.dropSeries(s.m, n)
}

// firstRequest waits for a sync slot (syncslots.go), then signs the node
// in. It runs on the stream's goroutine, before go-control-plane acts on
// the request: until it returns, nothing is sent on the stream. A node
// that resumes (its request names what it holds) takes no slot: it is
// sent only what it lacks, and may have nothing to ACK to free one.
func (s *Server) firstRequest(st *streamState, n *corev3.Node, resuming bool) error {
	if n.GetId() == "" || resuming {
		return s.signIn(st.key, n)
	}
	slot, err := s.acquireSync(st.ctx)
	if err != nil {
		return err
	}
	st.slot = slot
	if err := s.signIn(st.key, n); err != nil {
		slot.release()
		return err
	}
	return nil
}

// signIn binds a stream to its node on its first request and gives the
// node its snapshot before the cache sees the request.
func (s *Server) signIn(k streamKey, n *corev3.Node) error {
	if n.GetId() == "" {
		return status.Error(codes.InvalidArgument, "xds: node.id is required (Envoy: --service-node or node.id in the bootstrap)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, first := s.nodes.bind(k, n)
	if ns == nil {
		return status.Error(codes.Internal, "xds: unknown stream")
	}
	if first {
		s.log.Info("xds node connected", "node", n.GetId(), "cluster", n.GetCluster(), "user_agent", n.GetUserAgentName(), "flavour", ns.flavour)
	}
	s.assignLocked(ns)
	return nil
}

func (c *callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	k := streamKey{protoSotW, id}
	st, version, answered := c.s.nodes.answer(k, req.GetTypeUrl(), req.GetResponseNonce())
	if st != nil && st.node == nil {
		if err := c.s.firstRequest(st, req.GetNode(), req.GetVersionInfo() != ""); err != nil {
			return err
		}
		st, _, _ = c.s.nodes.answer(k, req.GetTypeUrl(), "")
	}
	if st == nil || st.node == nil {
		return nil
	}
	if !answered {
		// A type's first request on a new stream names the version the
		// node already holds (a reconnect, or a move from another
		// replica). When it is this snapshot's, nothing is pushed, so
		// record it as accepted: /xds/nodes shows the node in sync.
		if req.GetResponseNonce() == "" && req.GetErrorDetail() == nil && req.GetVersionInfo() != "" {
			c.s.acked(st.node, req.GetTypeUrl(), req.GetVersionInfo())
		}
		return nil
	}
	if st.slot != nil && c.s.syncDone(st.node, req.GetTypeUrl(), version) {
		st.slot.release()
	}
	if req.GetErrorDetail() != nil {
		c.s.nacked(st.node, req.GetTypeUrl(), version, req.GetErrorDetail().GetMessage())
		// The request names the last version the node accepted; the
		// cache would answer it with the rejected snapshot at once, and
		// again after every NACK. Tell it the node holds the rejected
		// version, so the watch waits for a new one.
		req.VersionInfo = version
		return nil
	}
	c.s.acked(st.node, req.GetTypeUrl(), req.GetVersionInfo())
	return nil
}

func (c *callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	k := streamKey{protoDelta, id}
	c.s.shareVersions(req)
	st, version, answered := c.s.nodes.answer(k, req.GetTypeUrl(), req.GetResponseNonce())
	if st != nil && st.node == nil {
		return c.s.firstRequest(st, req.GetNode(), len(req.GetInitialResourceVersions()) > 0)
	}
	if !answered || st == nil || st.node == nil {
		return nil
	}
	if st.slot != nil && c.s.syncDone(st.node, req.GetTypeUrl(), version) {
		st.slot.release()
	}
	if req.GetErrorDetail() != nil {
		// Delta streams remember what they sent, so a NACK is not
		// answered with the same resources again.
		c.s.nacked(st.node, req.GetTypeUrl(), version, req.GetErrorDetail().GetMessage())
		return nil
	}
	c.s.acked(st.node, req.GetTypeUrl(), version)
	return nil
}

func (c *callbacks) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	typ := snapshot.ShortType(resp.GetTypeUrl())
	c.s.m.responses.WithLabelValues(typ, protoSotW).Inc()
	c.s.m.resourcesSent.WithLabelValues(typ, protoSotW).Add(float64(len(resp.GetResources())))
	c.s.nodes.sent(streamKey{protoSotW, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), len(resp.GetResources()))
	if partialType(resp.GetTypeUrl()) {
		c.s.mu.Lock()
		c.s.sentPartialLocked(req.GetNode().GetId(), resp.GetTypeUrl(), resp)
		c.s.mu.Unlock()
	}
}

func (c *callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	typ := snapshot.ShortType(resp.GetTypeUrl())
	c.s.m.responses.WithLabelValues(typ, protoDelta).Inc()
	c.s.m.resourcesSent.WithLabelValues(typ, protoDelta).Add(float64(len(resp.GetResources())))
	c.s.nodes.sent(streamKey{protoDelta, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), len(resp.GetResources()))
}

func (c *callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return status.Error(codes.Unimplemented, "xds: REST fetch is not served; use ADS")
}

func (c *callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

func (s *Server) acked(n *nodeState, typeURL, version string) {
	typ := snapshot.ShortType(typeURL)
	s.m.acks.WithLabelValues(typ).Inc()
	s.mu.Lock()
	group := n.group
	s.mu.Unlock()
	s.nodes.ack(s.m, n, typeURL, group, version)
	s.accepted(n, typeURL, version)
}

// nacked logs, counts and audits a rejection, with the config elements
// that produced the rejected resources.
func (s *Server) nacked(n *nodeState, typeURL, version, detail string) {
	typ := snapshot.ShortType(typeURL)
	s.m.nacks.WithLabelValues(typ).Inc()
	s.m.nodeNacked.WithLabelValues(n.node.GetId(), typ).Set(1)
	s.mu.Lock()
	set := s.set
	s.mu.Unlock()
	origins := mapDetail(set, detail)
	ns := &NackStatus{Version: version, Detail: truncate(detail), At: nowUTC(), Origins: origins}
	if !s.nodes.nack(n, typeURL, ns) {
		return
	}
	where := describeOrigins(origins)
	s.log.Error("xds NACK: a node rejected the config; it keeps its last accepted version until the config changes",
		"node", n.node.GetId(), "cluster", n.node.GetCluster(), "type", typ, "version", version,
		"detail", ns.Detail, "config", where)
	if s.audit != nil {
		d := typ + ": " + ns.Detail
		if where != "" {
			d += " (config: " + where + ")"
		}
		s.audit.Record(audit.Event{Kind: audit.KindXDSNack, Node: n.node.GetId(), Version: version, Detail: d})
	}
}

// shareVersions replaces each version a resuming Delta node names (its
// initial_resource_versions, which its stream keeps as what it holds) by
// the served set's own string when they are equal: a thousand nodes
// reconnecting then hold pointers to one copy of each version, not a
// copy each (64 bytes per resource and node).
func (s *Server) shareVersions(req *discoveryv3.DeltaDiscoveryRequest) {
	iv := req.GetInitialResourceVersions()
	if len(iv) == 0 {
		return
	}
	s.mu.Lock()
	set := s.set
	s.mu.Unlock()
	if set == nil {
		return
	}
	for name, v := range iv {
		if own := set.ResourceVersion(req.GetTypeUrl(), name); own == v {
			iv[name] = own
		}
	}
}
