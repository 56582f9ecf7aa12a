package server_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/xds/adsclient"
	"github.com/gatehouse/gatehouse/xds/server"
)

// splitCfg has routes split by host (one RDS unit per host), hosts
// h0..h<hosts-1> with perHost routes each, and one cluster per host.
func splitCfg(hosts, perHost int, extra string) string {
	var b strings.Builder
	b.WriteString("apiVersion: gatehouse/v1\n" + extra + "xds: {routeSplit: host}\nlisteners: [{name: public, address: \"127.0.0.1:10000\"}]\nclusters:\n")
	for h := range hosts {
		fmt.Fprintf(&b, "  - {name: c%d, endpoints: [{address: \"10.0.%d.1:80\"}]}\n", h, h)
	}
	b.WriteString("routes:\n")
	for h := range hosts {
		for r := range perHost {
			fmt.Fprintf(&b, "  - {id: r%d-%d, match: {hosts: [h%d.test], prefix: /p%d/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c%d, timeout: 5s}\n", h, r, h, r, h)
		}
	}
	return b.String()
}

func anyNames(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cachev3.GetResourceName(m))
	}
	slices.Sort(out)
	return out
}

// sotwSync drives an Envoy-like SotW client to a full sync: CDS, EDS for
// every cluster, LDS, SRDS, RDS for every unit. It returns the last
// response of each type (the RDS ones all, in order).
func sotwSync(t *testing.T, s *adsclient.SotW, clusters, units []string) (map[string]*discoveryv3.DiscoveryResponse, []*discoveryv3.DiscoveryResponse) {
	t.Helper()
	last := map[string]*discoveryv3.DiscoveryResponse{}
	step := func(typ string, names ...string) *discoveryv3.DiscoveryResponse {
		if err := s.Request(typ, names...); err != nil {
			t.Fatal(err)
		}
		r := recvType(t, s, typ)
		if err := s.Ack(r, names...); err != nil {
			t.Fatal(err)
		}
		last[typ] = r
		return r
	}
	step(resourcev3.ClusterType)
	step(resourcev3.EndpointType, clusters...)
	step(resourcev3.ListenerType)
	step(resourcev3.ScopedRouteType)
	var rds []*discoveryv3.DiscoveryResponse
	r := step(resourcev3.RouteType, units...)
	rds = append(rds, r)
	for strings.HasSuffix(r.GetVersionInfo(), "/partial") {
		r = recvType(t, s, resourcev3.RouteType)
		if err := s.Ack(r, units...); err != nil {
			t.Fatal(err)
		}
		rds = append(rds, r)
	}
	last[resourcev3.RouteType] = r
	return last, rds
}

func seq(prefix string, n int, suffix string) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("%s%d%s", prefix, i, suffix)
	}
	return out
}

// TestSotWSendsOnlyWhatChanged: on State of the World, a route change
// sends its host's route configuration alone and an endpoint change its
// cluster's load assignment alone; nothing else is sent.
func TestSotWSendsOnlyWhatChanged(t *testing.T) {
	h := start(t)
	base := splitCfg(3, 2, "")
	h.srv.Push(buildSet(t, base))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("p1", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units := seq("routes/public/h", 3, ".test")
	last, _ := sotwSync(t, s, seq("c", 3, ""), units)
	if got := anyNames(t, last[resourcev3.RouteType]); !slices.Equal(got, units) {
		t.Fatalf("first RDS response = %v; want every unit %v", got, units)
	}

	// One route of h1 changes: only its unit is sent.
	routeChanged := strings.Replace(base, "/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/changed}, cluster: c1", 1)
	h.srv.Push(buildSet(t, routeChanged))
	r := recvType(t, s, resourcev3.RouteType)
	if got := anyNames(t, r); !slices.Equal(got, []string{"routes/public/h1.test"}) {
		t.Errorf("after a route change of h1, RDS = %v; want routes/public/h1.test alone", got)
	}
	if err := s.Ack(r, units...); err != nil {
		t.Fatal(err)
	}

	// One cluster's endpoints change: only its load assignment is sent
	// (and nothing in between: the next response is EDS).
	h.srv.Push(buildSet(t, strings.Replace(routeChanged, "10.0.2.1:80", "10.0.2.9:80", 1)))
	e := recvType(t, s, resourcev3.EndpointType)
	if got := anyNames(t, e); !slices.Equal(got, []string{"c2"}) {
		t.Errorf("after an endpoint change of c2, EDS = %v; want c2 alone", got)
	}
	if err := s.Ack(e, seq("c", 3, "")...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		st := nodeStatus(t, h, "p1").Types
		return st["routes"].InSync && st["endpoints"].InSync && st["clusters"].InSync
	})
	_ = s.CloseSend()
}

// TestSotWSplitsResponsesUnderTheLimit: when what changed is larger than
// the largest message the server may send, it comes in several
// responses, each under the limit; the node is in sync once it has them
// all.
func TestSotWSplitsResponsesUnderTheLimit(t *testing.T) {
	h := start(t)
	const limit = 16 << 10
	set := buildSet(t, splitCfg(8, 20, "server: {grpc: {maxSendMessageSize: 16KiB}}\n"))
	total := 0
	for _, rc := range set.Resources.Routes {
		total += proto.Size(rc)
	}
	if total <= 2*limit {
		t.Fatalf("the route table is %d bytes; the test needs more than twice the %d limit", total, limit)
	}
	h.srv.Push(set)
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("p2", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units := seq("routes/public/h", 8, ".test")
	_, rds := sotwSync(t, s, seq("c", 8, ""), units)
	if len(rds) < 3 {
		t.Errorf("%d RDS responses for %d bytes of routes; want at least 3 under a %d limit", len(rds), total, limit)
	}
	var got []string
	for _, r := range rds {
		if n := proto.Size(r); n > limit {
			t.Errorf("an RDS response is %d bytes; the limit is %d", n, limit)
		}
		got = append(got, anyNames(t, r)...)
	}
	slices.Sort(got)
	if !slices.Equal(got, units) {
		t.Errorf("RDS responses carried %v; want each unit once: %v", got, units)
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "p2").Types["routes"].InSync })
	_ = s.CloseSend()
}

// TestReconnectToReplicaSendsNothing: two servers built from the same
// config (two replicas) serve the same versions; a node synced with one
// that reconnects to the other naming its versions is sent nothing, and
// the next change reaches it as the change alone.
func TestReconnectToReplicaSendsNothing(t *testing.T) {
	a, b := start(t), start(t)
	base := splitCfg(3, 2, "")
	a.srv.Push(buildSet(t, base))
	b.srv.Push(buildSet(t, base))
	if a.srv.Current().Version != b.srv.Current().Version {
		t.Fatalf("replicas disagree on the version: %s, %s", a.srv.Current().Version, b.srv.Current().Version)
	}
	ctxA, cancelA := context.WithCancel(a.ctx)
	s, err := adsclient.NewSotW(ctxA, a.conn, envoyNode("p3", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units, clusters := seq("routes/public/h", 3, ".test"), seq("c", 3, "")
	last, _ := sotwSync(t, s, clusters, units)
	cancelA()

	// Reconnect to b, as Envoy does: each request names the version it holds.
	s2, err := adsclient.NewSotW(b.ctx, b.conn, envoyNode("p3", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct {
		typ   string
		names []string
	}{{resourcev3.ClusterType, nil}, {resourcev3.EndpointType, clusters}, {resourcev3.ListenerType, nil}, {resourcev3.ScopedRouteType, nil}, {resourcev3.RouteType, units}} {
		if err := s2.Resume(req.typ, last[req.typ].GetVersionInfo(), req.names...); err != nil {
			t.Fatal(err)
		}
	}
	// Both requests of the partial types are in (and claimed).
	waitFor(t, func() bool { return server.OpenWatches(b.srv, "p3") == 2 })
	// A change of one route: if the reconnect had been answered, those
	// responses would come first. The reconnected node's watches hold
	// what it claimed as their base: the change is found without looking
	// at every resource.
	scans := server.FullScans(b.srv)
	b.srv.Push(buildSet(t, strings.Replace(base, "/p1/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c0", "/moved}, cluster: c0", 1)))
	r, err := s2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resourcev3.RouteType {
		t.Fatalf("first response after reconnecting to the other replica: %s; want the route change alone", r.GetTypeUrl())
	}
	if got := anyNames(t, r); !slices.Equal(got, []string{"routes/public/h0.test"}) {
		t.Errorf("route change after the reconnect sent %v; want routes/public/h0.test alone", got)
	}
	if n := server.FullScans(b.srv) - scans; n != 0 {
		t.Errorf("the change after the reconnect made %d watches look at every resource; want 0", n)
	}
	_ = s2.CloseSend()
}

// TestDeltaSplitsResponsesUnderTheLimit: Delta too sends a large change
// in several messages under the limit, each ACKed before the next.
func TestDeltaSplitsResponsesUnderTheLimit(t *testing.T) {
	h := start(t)
	const limit = 16 << 10
	h.srv.Push(buildSet(t, splitCfg(8, 20, "server: {grpc: {maxSendMessageSize: 16KiB}}\n")))
	d, err := adsclient.NewDelta(h.ctx, h.conn, envoyNode("p4", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units := seq("routes/public/h", 8, ".test")
	if err := d.Subscribe(resourcev3.RouteType, units...); err != nil {
		t.Fatal(err)
	}
	var got []string
	responses := 0
	for len(got) < len(units) {
		r, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		responses++
		if n := proto.Size(r); n > limit {
			t.Errorf("a delta response is %d bytes; the limit is %d", n, limit)
		}
		got = append(got, adsclient.Names(r)...)
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, units) || responses < 3 {
		t.Errorf("%d delta responses carried %v; want each unit once, in at least 3", responses, got)
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "p4").Types["routes"].InSync })
	_ = d.CloseSend()
}

// TestChangesCoalescePerNode: changes pushed faster than a node ACKs
// reach it as one response with the newest version, holding what changed
// since its last response: a node has at most one response in flight per
// type, whatever the rate of config changes.
func TestChangesCoalescePerNode(t *testing.T) {
	h := start(t)
	base := splitCfg(6, 1, "")
	h.srv.Push(buildSet(t, base))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("p5", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units := seq("routes/public/h", 6, ".test")
	sotwSync(t, s, seq("c", 6, ""), units)
	// The ACKs are in: the EDS and RDS watches are open.
	waitFor(t, func() bool { return server.OpenWatches(h.srv, "p5") == 2 })

	// Change host 0, then hosts 1..4, one push each, without ACKing.
	cfg := base
	var last string
	for host := range 5 {
		cfg = strings.Replace(cfg, fmt.Sprintf("/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c%d", host), fmt.Sprintf("/v2}, cluster: c%d", host), 1)
		set := buildSet(t, cfg)
		h.srv.Push(set)
		last = set.Group("default").Snapshot("envoy").GetVersion(resourcev3.RouteType)
	}
	first := recvType(t, s, resourcev3.RouteType)
	if got := anyNames(t, first); !slices.Equal(got, []string{"routes/public/h0.test"}) {
		t.Fatalf("first response = %v; want the first change (h0) alone", got)
	}
	if err := s.Ack(first, units...); err != nil {
		t.Fatal(err)
	}
	second := recvType(t, s, resourcev3.RouteType)
	if got := anyNames(t, second); !slices.Equal(got, units[1:5]) {
		t.Errorf("second response = %v; want the four later changes in one: %v", got, units[1:5])
	}
	if second.GetVersionInfo() != last {
		t.Errorf("second response version %s; want the newest %s", second.GetVersionInfo(), last)
	}
	if err := s.Ack(second, units...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "p5").Types["routes"].InSync })
	if sent := nodeStatus(t, h, "p5").Types["routes"].Sent; sent != last {
		t.Errorf("last routes response sent %s; want %s (no third response)", sent, last)
	}
	_ = s.CloseSend()
}

// TestLargeSyncsTakeTurns: first syncs of a large table are admitted
// within a budget of bytes in flight; a node over it waits until one in
// flight is ACKed, then gets its table.
func TestLargeSyncsTakeTurns(t *testing.T) {
	h := start(t)
	server.SetInflightBudget(h.srv, 1, 1) // every response is large; one at a time
	h.srv.Push(buildSet(t, splitCfg(2, 1, "")))
	units := seq("routes/public/h", 2, ".test")
	open := func(id string) *adsclient.SotW {
		s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode(id, "mesh"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Request(resourcev3.RouteType, units...); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := open("big-a")
	ra := recvType(t, a, resourcev3.RouteType)
	b := open("big-b")
	waitFor(t, func() bool { return counterValue(t, h, "gatehouse_xds_large_responses_deferred_total") >= 1 })
	if _, sent := nodeStatus(t, h, "big-b").Types["routes"]; sent {
		t.Fatal("big-b was sent its table while big-a's was in flight")
	}
	if err := a.Ack(ra, units...); err != nil {
		t.Fatal(err)
	}
	rb := recvType(t, b, resourcev3.RouteType)
	if got := anyNames(t, rb); !slices.Equal(got, units) {
		t.Errorf("big-b got %v after big-a's ACK; want %v", got, units)
	}
	_ = a.CloseSend()
	_ = b.CloseSend()
}

func counterValue(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestDeltaReconnectSendsNothing: a Delta node that reconnects naming
// the versions it was sent (initial_resource_versions) is sent nothing of
// any type: the versions gatehouse tracks are the ones on the wire.
func TestDeltaReconnectSendsNothing(t *testing.T) {
	h := start(t)
	base := splitCfg(2, 1, "")
	h.srv.Push(buildSet(t, base))
	ctx1, cancel1 := context.WithCancel(h.ctx)
	d, err := adsclient.NewDelta(ctx1, h.conn, envoyNode("p6", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]map[string]string{}
	units := seq("routes/public/h", 2, ".test")
	for _, sub := range []struct {
		typ   string
		names []string
	}{{resourcev3.ClusterType, nil}, {resourcev3.ListenerType, nil}, {resourcev3.RouteType, units}} {
		if err := d.Subscribe(sub.typ, sub.names...); err != nil {
			t.Fatal(err)
		}
		r, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		have[r.GetTypeUrl()] = map[string]string{}
		for _, res := range r.GetResources() {
			have[r.GetTypeUrl()][res.GetName()] = res.GetVersion()
		}
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	cancel1()
	waitFor(t, func() bool { return !nodeStatus(t, h, "p6").Connected })

	d2, err := adsclient.NewDelta(h.ctx, h.conn, envoyNode("p6", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.RouteType} {
		var names []string
		if typ == resourcev3.RouteType {
			names = units
		}
		if err := d2.Resume(typ, have[typ], names...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return server.OpenWatches(h.srv, "p6") == 1 })
	// It was sent nothing of its route configurations, and holds them:
	// /xds/nodes shows it in sync.
	waitFor(t, func() bool {
		ts := nodeStatus(t, h, "p6").Types["routes"]
		return ts != nil && ts.InSync
	})
	h.srv.Push(buildSet(t, strings.Replace(base, "/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/moved}, cluster: c1", 1)))
	// go-control-plane answers the first wildcard request of a stream
	// even when there is nothing to send (Envoy waits for it): empty
	// responses, which carry nothing.
	var r *discoveryv3.DeltaDiscoveryResponse
	for r == nil || (len(r.GetResources()) == 0 && len(r.GetRemovedResources()) == 0) {
		if r, err = d2.Recv(); err != nil {
			t.Fatal(err)
		}
		if err := d2.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	if r.GetTypeUrl() != resourcev3.RouteType || !slices.Equal(adsclient.Names(r), []string{"routes/public/h1.test"}) {
		t.Errorf("first response after the reconnect: %s %v; want the route change alone (routes/public/h1.test)", r.GetTypeUrl(), adsclient.Names(r))
	}
	_ = d2.CloseSend()
}

// TestFirstSyncsTakeTurns: at most the sync slots' number of nodes sync
// at once; a node over it is answered once one in sync ACKed its routes.
func TestFirstSyncsTakeTurns(t *testing.T) {
	h := start(t)
	server.SetSyncSlots(h.srv, 1)
	h.srv.Push(buildSet(t, splitCfg(2, 1, "")))
	a, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("slot-a", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	ca := recvType(t, a, resourcev3.ClusterType)
	b, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("slot-b", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	// b waits: it is not even signed in while a syncs.
	units := seq("routes/public/h", 2, ".test")
	if err := a.Ack(ca); err != nil {
		t.Fatal(err)
	}
	if err := a.Request(resourcev3.RouteType, units...); err != nil {
		t.Fatal(err)
	}
	ra := recvType(t, a, resourcev3.RouteType)
	// A node resuming with what it holds takes no slot: it signs in now.
	c, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("slot-c", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(resourcev3.ClusterType, ca.GetVersionInfo()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(httptestNodes(t, h), "slot-c") })
	rr := httptestNodes(t, h)
	if strings.Contains(rr, "slot-b") {
		t.Fatalf("slot-b signed in while slot-a held the only sync slot: %s", rr)
	}
	if err := a.Ack(ra, units...); err != nil {
		t.Fatal(err)
	}
	cb := recvType(t, b, resourcev3.ClusterType)
	if len(cb.GetResources()) == 0 {
		t.Error("slot-b's clusters are empty")
	}
	_ = a.CloseSend()
	_ = b.CloseSend()
	_ = c.CloseSend()
}

func httptestNodes(t *testing.T, h *harness) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.srv.NodesHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/xds/nodes", nil))
	return rec.Body.String()
}
