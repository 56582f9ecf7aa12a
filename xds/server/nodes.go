package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// maxGone bounds how many disconnected nodes /xds/nodes remembers, so
// that a node that NACKed and went away can still be investigated.
const maxGone = 256

// streamKey names a stream. go-control-plane numbers State-of-the-World
// and Delta streams with two independent counters, both from 1, so an id
// alone names two streams in any fleet with both kinds of client: the key
// is the pair.
type streamKey struct {
	protocol string
	id       int64
}

// tracker knows every stream and node. Its lock is taken after s.mu.
type tracker struct {
	mu      sync.Mutex
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
	gone    []*nodeState
}

type streamState struct {
	key  streamKey
	peer string
	ctx  context.Context
	// slot is the sync slot the stream holds during its node's first
	// sync (syncslots.go).
	slot *syncSlot
	node *nodeState
	// sent holds, per type URL, the nonce and version of the last
	// response: a request answering that nonce ACKs or NACKs it.
	sent map[string]sentResponse
}

type sentResponse struct {
	nonce, version string
}

type nodeState struct {
	node        *corev3.Node
	flavour     snapshot.Flavour
	group       string
	protocol    string
	peer        string
	streams     int
	connectedAt time.Time
	lastSeen    time.Time
	types       map[string]*TypeStatus
	// series are the labels of the node's acked-version series, by
	// short type (t.mu): replaced and deleted by name, never by a
	// partial match, which scans every node's series.
	series map[string]ackedSeries

	// snap is the snapshot the cache holds for the node, set the set it
	// was built from (s.mu).
	snap *cachev3.Snapshot
	set  *snapshot.Set
	// acc is what the node accepted last of each type (s.mu): a change
	// reaches it make before break (snapshot.Stage).
	acc snapshot.Accepted
}

// TypeStatus is what one node was sent and accepted of one resource type.
type TypeStatus struct {
	Sent      string      `json:"sent,omitempty"`
	SentAt    *time.Time  `json:"sentAt,omitempty"`
	Resources int         `json:"resources"`
	Acked     string      `json:"acked,omitempty"`
	AckedAt   *time.Time  `json:"ackedAt,omitempty"`
	Current   string      `json:"current,omitempty"`
	InSync    bool        `json:"inSync"`
	Nack      *NackStatus `json:"nack,omitempty"`
}

// NackStatus is the last rejection of a type by a node.
type NackStatus struct {
	Version string    `json:"version"`
	Detail  string    `json:"detail"`
	At      time.Time `json:"at"`
	// Origins are the config elements named in the detail.
	Origins []translate.Origin `json:"origins,omitempty"`
}

func newTracker() *tracker {
	return &tracker{streams: map[streamKey]*streamState{}, nodes: map[string]*nodeState{}}
}

func (t *tracker) open(ctx context.Context, k streamKey, peer string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[k] = &streamState{key: k, peer: peer, ctx: ctx, sent: map[string]sentResponse{}}
}

// bind attaches a stream to its node on the stream's first request, and
// returns the node and whether this is the node's first open stream.
func (t *tracker) bind(k streamKey, n *corev3.Node) (*nodeState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[k]
	if st == nil || st.node != nil {
		if st != nil {
			return st.node, false
		}
		return nil, false
	}
	now := time.Now()
	ns := t.nodes[n.GetId()]
	first := ns == nil
	if first {
		ns = &nodeState{node: n, flavour: flavourOf(n), connectedAt: now, types: map[string]*TypeStatus{}}
		t.nodes[n.GetId()] = ns
		t.forgetGone(n.GetId())
	}
	ns.streams++
	ns.protocol, ns.peer, ns.lastSeen = st.key.protocol, st.peer, now
	st.node = ns
	return ns, first
}

// close ends a stream and returns its node when that was its last one.
func (t *tracker) close(k streamKey) *nodeState {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[k]
	delete(t.streams, k)
	if st != nil {
		st.slot.release()
	}
	if st == nil || st.node == nil {
		return nil
	}
	ns := st.node
	ns.streams--
	ns.lastSeen = time.Now()
	if ns.streams > 0 {
		return nil
	}
	delete(t.nodes, ns.node.GetId())
	t.gone = append(t.gone, ns)
	if len(t.gone) > maxGone {
		t.gone = t.gone[len(t.gone)-maxGone:]
	}
	return ns
}

func (t *tracker) forgetGone(id string) {
	for i, g := range t.gone {
		if g.node.GetId() == id {
			t.gone = append(t.gone[:i], t.gone[i+1:]...)
			return
		}
	}
}

func (t *tracker) connected() []*nodeState {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*nodeState, 0, len(t.nodes))
	for _, n := range t.nodes {
		out = append(out, n)
	}
	return out
}

// sent records a response on a stream.
func (t *tracker) sent(k streamKey, typeURL, nonce, version string, resources int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[k]
	if st == nil {
		return
	}
	st.sent[typeURL] = sentResponse{nonce: nonce, version: version}
	if st.node == nil {
		return
	}
	ts := st.node.typeStatus(typeURL)
	now := time.Now()
	ts.Sent, ts.SentAt, ts.Resources = version, &now, resources
}

// answer resolves the nonce of a request to the version it answers. ok
// is false for a first request or a stale nonce.
func (t *tracker) answer(k streamKey, typeURL, nonce string) (st *streamState, version string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st = t.streams[k]
	if st == nil || nonce == "" {
		return st, "", false
	}
	s, found := st.sent[typeURL]
	if !found || s.nonce != nonce {
		return st, "", false
	}
	if st.node != nil {
		st.node.lastSeen = time.Now()
	}
	return st, s.version, true
}

func (n *nodeState) typeStatus(typeURL string) *TypeStatus {
	key := snapshot.ShortType(typeURL)
	ts := n.types[key]
	if ts == nil {
		ts = &TypeStatus{}
		n.types[key] = ts
	}
	return ts
}

// ackedSeries is the group and version labels of a node's
// gatehouse_xds_node_acked_version_info series of one type.
type ackedSeries struct{ group, version string }

// ack records that a node of group accepted version, in /xds/nodes and
// in the node's series.
func (t *tracker) ack(m *metrics, n *nodeState, typeURL, group, version string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts := n.typeStatus(typeURL)
	now := time.Now()
	ts.Acked, ts.AckedAt, ts.Nack = version, &now, nil
	id, typ := n.node.GetId(), snapshot.ShortType(typeURL)
	cur := ackedSeries{group: group, version: version}
	if prev, ok := n.series[typ]; !ok || prev != cur {
		if ok {
			m.nodeAcked.DeleteLabelValues(id, prev.group, typ, prev.version)
		}
		if n.series == nil {
			n.series = map[string]ackedSeries{}
		}
		n.series[typ] = cur
		m.nodeAcked.WithLabelValues(id, group, typ, version).Set(1)
	}
	m.nodeNacked.WithLabelValues(id, typ).Set(0)
}

// resumed records that a connected node holds version of a type it was
// not sent on this stream (it named it reconnecting). s.mu is held.
func (t *tracker) resumed(m *metrics, id, typeURL, version string) {
	t.mu.Lock()
	n := t.nodes[id]
	t.mu.Unlock()
	if n != nil {
		t.ack(m, n, typeURL, n.group, version)
	}
}

// dropSeries deletes a gone node's series.
func (t *tracker) dropSeries(m *metrics, n *nodeState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := n.node.GetId()
	for typ, l := range n.series {
		m.nodeAcked.DeleteLabelValues(id, l.group, typ, l.version)
	}
	n.series = nil
	for _, typ := range snapshot.TypeURLs {
		m.nodeNacked.DeleteLabelValues(id, snapshot.ShortType(typ))
	}
	m.nodeNacked.DeleteLabelValues(id, snapshot.ShortType("")) // a type gatehouse does not serve
}

// nack records a rejection; it reports whether it is news (not the
// same version rejected again).
func (t *tracker) nack(n *nodeState, typeURL string, ns *NackStatus) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ts := n.typeStatus(typeURL)
	news := ts.Nack == nil || ts.Nack.Version != ns.Version
	ts.Nack = ns
	return news
}

// NodeStatus is one node as /xds/nodes shows it.
type NodeStatus struct {
	ID          string                 `json:"id"`
	Cluster     string                 `json:"cluster,omitempty"`
	Group       string                 `json:"group"`
	Flavour     snapshot.Flavour       `json:"flavour"`
	UserAgent   string                 `json:"userAgent,omitempty"`
	Protocol    string                 `json:"protocol"`
	Peer        string                 `json:"peer,omitempty"`
	Connected   bool                   `json:"connected"`
	Streams     int                    `json:"streams"`
	ConnectedAt time.Time              `json:"connectedAt"`
	LastSeen    time.Time              `json:"lastSeen"`
	Types       map[string]*TypeStatus `json:"types"`
}

// NodesReport is the /xds/nodes body.
type NodesReport struct {
	Version string       `json:"version"`
	Nodes   []NodeStatus `json:"nodes"`
}

// Nodes reports every connected node, and recently disconnected ones.
func (s *Server) Nodes() NodesReport {
	s.mu.Lock() // n.snap and n.group are written under s.mu
	defer s.mu.Unlock()
	set := s.set
	t := s.nodes
	t.mu.Lock()
	defer t.mu.Unlock()
	rep := NodesReport{Nodes: []NodeStatus{}}
	if set != nil {
		rep.Version = set.Version
	}
	add := func(n *nodeState, connected bool) {
		ns := NodeStatus{
			ID: n.node.GetId(), Cluster: n.node.GetCluster(), Group: n.group, Flavour: n.flavour,
			UserAgent: n.node.GetUserAgentName(), Protocol: n.protocol, Peer: n.peer,
			Connected: connected, Streams: n.streams, ConnectedAt: n.connectedAt, LastSeen: n.lastSeen,
			Types: map[string]*TypeStatus{},
		}
		for _, typ := range snapshot.TypeURLs {
			k := snapshot.ShortType(typ)
			ts, ok := n.types[k]
			if !ok {
				continue
			}
			c := *ts
			if n.snap != nil && connected {
				c.Current = n.snap.GetVersion(typ)
				c.InSync = c.Acked != "" && c.Acked == c.Current
			}
			ns.Types[k] = &c
		}
		rep.Nodes = append(rep.Nodes, ns)
	}
	for _, n := range t.nodes {
		add(n, true)
	}
	for _, n := range t.gone {
		add(n, false)
	}
	sort.Slice(rep.Nodes, func(i, j int) bool {
		a, b := rep.Nodes[i], rep.Nodes[j]
		if a.Connected != b.Connected {
			return a.Connected
		}
		return a.ID < b.ID
	})
	return rep
}

// NodesHandler serves /xds/nodes as JSON.
func (s *Server) NodesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := s.Nodes()
		if id := r.URL.Query().Get("node"); id != "" {
			var only []NodeStatus
			for _, n := range rep.Nodes {
				if n.ID == id {
					only = append(only, n)
				}
			}
			rep.Nodes = only
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	})
}
