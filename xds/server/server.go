// Package server serves gatehouse's snapshots over ADS, State-of-the-World
// and Delta on one gRPC service, and tracks what every connected node was
// sent, acknowledged and rejected.
//
// Each node gets the snapshot of its group (xds.nodeGroups, by node id or
// node cluster) and flavour: Envoy proxies get the http listeners,
// proxyless gRPC clients (recognised by the node's user agent) the grpc API
// listeners. Snapshots are keyed by node id in go-control-plane's cache, so
// a reload that moves a node to another group takes effect at once.
//
// A NACKed version is not re-sent: go-control-plane's State-of-the-World
// cache would answer the NACK (which carries the last accepted version)
// with the same rejected snapshot at once, in a loop. The callbacks tell
// the cache that the node holds the rejected version, so the watch waits
// for the next config change. Delta streams need no help: their state
// already records what was sent.
package server

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/xds/snapshot"
)

// Options build a Server.
type Options struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Audit   audit.Recorder
}

// Server is the ADS server.
type Server struct {
	log   *slog.Logger
	audit audit.Recorder
	m     *metrics

	ctx    context.Context
	cancel context.CancelFunc
	xds    serverv3.Server
	envoy  cachev3.SnapshotCache
	grpc   cachev3.SnapshotCache

	// mu orders pushes and node sign-ins, so that a node signing in
	// during a push gets the newest snapshot.
	mu    sync.Mutex
	set   *snapshot.Set
	nodes *tracker
	// watches are the open State-of-the-World watches of route
	// configurations and load assignments, by node (partial.go); claims
	// what a reconnected node holds of them (s.mu).
	watches  map[string]map[int64]*partialWatch
	watchSeq int64
	claims   map[string]map[string]string
	// inflight is the bytes of large responses not yet ACKed, held by
	// node and type (partial.go).
	inflight int
	held     map[string]int
	// largeResponse and inflightBudget are the bounds of admitLocked;
	// waiting are the watches it deferred, in order; deferredNow says
	// whether the last respondPartialLocked was deferred.
	largeResponse, inflightBudget int
	waiting                       []*partialWatch
	deferredNow                   bool
	// syncing holds a token per node in its first sync (syncslots.go).
	syncing chan struct{}
	// memo holds the stages of a change for the current set (stage.go).
	memo *stageMemo
	// complete holds each node's last complete response by node and
	// type (base.go); seed hashes request names.
	complete map[string]completeResponse
	seed     maphash.Seed
	// pending are the State-of-the-World responses of partial types
	// not sent yet, by node and type (partial.go).
	pending map[string]*pendingSotW
}

// New builds the server. It serves nothing until the first Push.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{log: o.Logger, audit: o.Audit, m: m, ctx: ctx, cancel: cancel,
		watches: map[string]map[int64]*partialWatch{}, claims: map[string]map[string]string{}, held: map[string]int{},
		largeResponse: defaultLargeResponse, inflightBudget: defaultInflightBudget,
		syncing: make(chan struct{}, defaultSyncSlots), memo: newStageMemo(),
		complete: map[string]completeResponse{}, seed: maphash.MakeSeed(), pending: map[string]*pendingSotW{}}
	s.nodes = newTracker()
	logger := cacheLogger{s.log}
	// Envoy gets the strict ADS cache: responses ordered clusters →
	// endpoints → listeners → routes, and RDS/EDS answered only once the
	// request names everything, so a route never arrives before its
	// cluster. gRPC clients request exactly the names they use, which
	// the strict cache would never answer.
	s.envoy = cachev3.NewSnapshotCache(true, nodeID{}, logger)
	s.grpc = cachev3.NewSnapshotCache(false, nodeID{}, logger)
	s.xds = serverv3.NewServer(ctx, &byFlavour{s: s}, &callbacks{s: s})
	return s, nil
}

// Register adds the ADS service (State-of-the-World and Delta) to g.
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, keepOpen{s.xds})
}

// Close ends every stream.
func (s *Server) Close() { s.cancel() }

// Current returns the set being served, or nil before the first push.
func (s *Server) Current() *snapshot.Set {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set
}

// Push makes set the served config and sends every connected node the
// snapshot of its group, when it differs from the one it has. A push of
// the same content sends nothing.
func (s *Server) Push(set *snapshot.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	same := s.set != nil && s.set.Version == set.Version
	s.set = set // the new set's origins carry the current file:line
	if same {
		return
	}
	s.resetMemoLocked()
	s.m.version.Reset()
	s.m.version.WithLabelValues(set.Version).Set(1)
	for _, n := range s.nodes.connected() {
		s.assignLocked(n)
	}
}

// assignLocked gives a node the snapshot of its group under the current
// set. s.mu is held.
func (s *Server) assignLocked(n *nodeState) {
	if s.set == nil {
		return
	}
	g := s.set.GroupOf(n.node)
	next := g.Snapshot(n.flavour)
	snap := s.stageLocked(next, n.acc)
	if n.snap == snap {
		return
	}
	// Every config change builds new snapshots; only one whose content
	// differs from what the node holds counts as a push (the cache sends
	// nothing for the others: their versions are the same).
	changed := n.snap == nil || !sameVersions(n.snap, snap)
	n.group = g.Name
	n.snap, n.set = snap, s.set
	if err := s.cacheFor(n.flavour).SetSnapshot(s.ctx, n.node.GetId(), snap); err != nil {
		s.log.Error("xds: set snapshot", "node", n.node.GetId(), "err", err)
		return
	}
	s.respondPartialsLocked(n.node.GetId())
	if changed {
		s.m.pushes.Inc()
	}
}

// accepted records that a node accepted version of a resource type, and
// moves it on to the next stage of a change when that was what it
// waited for (snapshot.Stage).
func (s *Server) accepted(n *nodeState, typeURL, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recordAcceptedLocked(n, typeURL, version) {
		s.assignLocked(n)
	}
}

// recordAcceptedLocked records in n.acc that the node holds version of
// a type; it reports whether that is news the node may move on with.
// s.mu is held.
func (s *Server) recordAcceptedLocked(n *nodeState, typeURL, version string) bool {
	if n.snap == nil || n.set == nil || n.snap.GetVersion(typeURL) != version {
		// An ACK of an older version: a newer push is on its way.
		return false
	}
	switch typeURL {
	case resourcev3.ClusterType:
		n.acc.Clusters = n.snap
	case resourcev3.EndpointType:
		n.acc.Endpoints = n.snap
	case resourcev3.ListenerType:
		n.acc.Listeners = n.snap
	case resourcev3.RouteType:
		if n.acc.Routes == nil || n.acc.Routes.GetVersion(typeURL) != version {
			n.acc.InUse = s.needsLocked(n.set, n.snap)
		}
		n.acc.Routes = n.snap
	default:
		return false
	}
	return true
}

// sameVersions reports whether two snapshots hold the same content: the
// versions are content hashes.
func sameVersions(a, b *cachev3.Snapshot) bool {
	for _, typ := range snapshot.TypeURLs {
		if a.GetVersion(typ) != b.GetVersion(typ) {
			return false
		}
	}
	return true
}

func (s *Server) cacheFor(f snapshot.Flavour) cachev3.SnapshotCache {
	if f == snapshot.GRPC {
		return s.grpc
	}
	return s.envoy
}

// flavourOf tells proxyless gRPC clients (user agent "gRPC Go", "gRPC
// Java", ...) from Envoy proxies.
func flavourOf(n *corev3.Node) snapshot.Flavour {
	if strings.HasPrefix(strings.ToLower(n.GetUserAgentName()), "grpc") {
		return snapshot.GRPC
	}
	return snapshot.Envoy
}

// nodeID keys the caches by node id: each node holds its group's
// snapshot (shared, not copied).
type nodeID struct{}

func (nodeID) ID(n *corev3.Node) string { return n.GetId() }

// byFlavour sends each request to the cache of its client's flavour.
type byFlavour struct{ s *Server }

func (b *byFlavour) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	if partialType(req.GetTypeUrl()) {
		return b.s.createPartialWatch(req, sub, ch)
	}
	return b.s.cacheFor(flavourOf(req.GetNode())).CreateWatch(req, b.s.claim(req, sub), ch)
}

func (b *byFlavour) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	// Delta needs no full state: every type is answered with what the
	// stream lacks, from shared encodings (partial.go).
	return b.s.createPartialDeltaWatch(req, sub, ch)
}

func (b *byFlavour) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("xds: REST fetch is not served; use ADS")
}

// cacheLogger routes go-control-plane's logs to slog at debug level
// (its Info lines are per watch, far too many for info).
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(format string, args ...any) {}
func (c cacheLogger) Infof(format string, args ...any)  {}
func (c cacheLogger) Warnf(format string, args ...any) {
	c.l.Debug("xds cache: " + sprintf(format, args...))
}
func (c cacheLogger) Errorf(format string, args ...any) {
	c.l.Warn("xds cache: " + sprintf(format, args...))
}
