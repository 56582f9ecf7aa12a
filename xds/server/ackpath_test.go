package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/xds/adsclient"
	"github.com/gatehouse/gatehouse/xds/server"
)

// TestAckWorkIsShared: what a node is sent after an ACK (the stage of a
// change, from the clusters its routes use) is computed once per
// distinct snapshot, not once per ACK: syncing more nodes, and taking a
// change to more nodes, costs no more of those computations.
func TestAckWorkIsShared(t *testing.T) {
	h := start(t)
	base := splitCfg(3, 2, "")
	h.srv.Push(buildSet(t, base))
	units, clusters := seq("routes/public/h", 3, ".test"), seq("c", 3, "")
	var streams []*adsclient.SotW
	var cancels []context.CancelFunc
	syncNodes := func(from, to int) {
		for i := from; i < to; i++ {
			ctx, cancel := context.WithCancel(h.ctx)
			t.Cleanup(cancel)
			cancels = append(cancels, cancel)
			s, err := adsclient.NewSotW(ctx, h.conn, envoyNode(fmt.Sprint("ack", i), "mesh"))
			if err != nil {
				t.Fatal(err)
			}
			sotwSync(t, s, clusters, units)
			streams = append(streams, s)
		}
	}
	syncNodes(0, 2)
	two := server.StageComputations(h.srv)
	syncNodes(2, 8)
	// Shared with the first two; a node whose ACK meets the others at a
	// step they had passed may add one.
	if eight := server.StageComputations(h.srv); eight-two > 1 {
		t.Errorf("syncing 6 more nodes computed %d stages; want at most 1 (shared with the first 2)", eight-two)
	}

	change := func(cfg string) int {
		before := server.StageComputations(h.srv)
		h.srv.Push(buildSet(t, cfg))
		for _, s := range streams {
			r := recvType(t, s, resourcev3.RouteType)
			if err := s.Ack(r, units...); err != nil {
				t.Fatal(err)
			}
		}
		for i := range streams {
			waitFor(t, func() bool { return nodeStatus(t, h, fmt.Sprint("ack", i)).Types["routes"].InSync })
		}
		return server.StageComputations(h.srv) - before
	}
	// What a node is sent next depends on which versions it has accepted
	// when it ACKs (old or new routes, as the push and the ACKs
	// interleave): a handful of combinations, not one per node. The exact
	// count depends on that timing, so the test bounds it below the number
	// of nodes rather than comparing two runs.
	const few = 5
	first := change(strings.Replace(base, "/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/a}, cluster: c1", 1))
	if first == 0 || first > few {
		t.Errorf("a route change to 8 nodes computed %d stages; want 1 to %d, shared by all", first, few)
	}
	// Half the nodes again: the same number, not half.
	for _, cancel := range cancels[4:] {
		cancel()
	}
	streams = streams[:4]
	waitFor(t, func() bool { return connectedCount(h) == 4 })
	second := change(strings.Replace(base, "/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/b}, cluster: c1", 1))
	if second == 0 || second > few {
		t.Errorf("a route change computed %d stages for 8 nodes, %d for 4; want 1 to %d for both", first, second, few)
	}
}

func connectedCount(h *harness) int {
	n := 0
	for _, ns := range h.srv.Nodes().Nodes {
		if ns.Connected {
			n++
		}
	}
	return n
}

// TestNodeSeriesFollowAcks: a node has one acked-version series per
// type, replaced when it accepts a new version, and none once it is gone.
func TestNodeSeriesFollowAcks(t *testing.T) {
	h := start(t)
	base := splitCfg(2, 1, "")
	h.srv.Push(buildSet(t, base))
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	s, err := adsclient.NewSotW(ctx, h.conn, envoyNode("series", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	units := seq("routes/public/h", 2, ".test")
	sotwSync(t, s, seq("c", 2, ""), units)
	series := func() map[string][]string {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, mf := range mfs {
			if mf.GetName() != "gatehouse_xds_node_acked_version_info" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, p := range m.GetLabel() {
					l[p.GetName()] = p.GetValue()
				}
				if l["node"] == "series" {
					out[l["type"]] = append(out[l["type"]], l["version"])
				}
			}
		}
		return out
	}
	waitFor(t, func() bool { return len(series()) == 5 })
	before := series()["routes"]
	h.srv.Push(buildSet(t, strings.Replace(base, "/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/a}, cluster: c1", 1)))
	r := recvType(t, s, resourcev3.RouteType)
	if err := s.Ack(r, units...); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		v := series()["routes"]
		return len(v) == 1 && v[0] == r.GetVersionInfo()
	})
	if got := series(); len(got) != 5 || len(before) != 1 {
		t.Errorf("series after a change: %v (before: routes %v); want one per type", got, before)
	}
	cancel()
	waitFor(t, func() bool { return len(series()) == 0 })
}

// TestPushLooksOnlyAtTheChange: once nodes are in sync, a change is found
// by what differs between snapshots, shared by all nodes: no watch looks
// at every resource of its type, neither for the push nor for the watch
// the node's ACK opens (SotW and Delta). What each node is sent is still
// the change alone, a removal included.
func TestPushLooksOnlyAtTheChange(t *testing.T) {
	h := start(t)
	base := splitCfg(4, 1, "")
	h.srv.Push(buildSet(t, base))
	units, clusters := seq("routes/public/h", 4, ".test"), seq("c", 4, "")
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("look-sotw", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	sotwSync(t, s, clusters, units)
	d, err := adsclient.NewDelta(h.ctx, h.conn, envoyNode("look-delta", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []struct {
		typ   string
		names []string
	}{{resourcev3.ClusterType, nil}, {resourcev3.EndpointType, clusters}, {resourcev3.ListenerType, nil}, {resourcev3.ScopedRouteType, nil}, {resourcev3.RouteType, units}} {
		if err := d.Subscribe(sub.typ, sub.names...); err != nil {
			t.Fatal(err)
		}
		r, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		return server.OpenWatches(h.srv, "look-sotw") == 2 && server.OpenWatches(h.srv, "look-delta") == 5
	})

	// An endpoint change, then a route change: each node gets the one
	// resource, and ACKs it.
	cfg := base
	for _, step := range []struct {
		from, to, typ, name string
	}{
		{"10.0.2.1:80", "10.0.2.9:80", resourcev3.EndpointType, "c2"},
		{"/p0/with/a/longer/path/to/take/some/room/in/the/table}, cluster: c1", "/x}, cluster: c1", resourcev3.RouteType, "routes/public/h1.test"},
	} {
		cfg = strings.Replace(cfg, step.from, step.to, 1)
		before := server.FullScans(h.srv)
		h.srv.Push(buildSet(t, cfg))
		r := recvType(t, s, step.typ)
		if got := anyNames(t, r); len(got) != 1 || got[0] != step.name {
			t.Errorf("SotW after a change of %s: %v", step.name, got)
		}
		names := clusters
		if step.typ == resourcev3.RouteType {
			names = units
		}
		if err := s.Ack(r, names...); err != nil {
			t.Fatal(err)
		}
		dr, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got := adsclient.Names(dr); dr.GetTypeUrl() != step.typ || len(got) != 1 || got[0] != step.name {
			t.Errorf("Delta after a change of %s: %s %v", step.name, dr.GetTypeUrl(), got)
		}
		if err := d.Ack(dr); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			return server.OpenWatches(h.srv, "look-sotw") == 2 && server.OpenWatches(h.srv, "look-delta") == 5 &&
				nodeStatus(t, h, "look-sotw").Types[snapshotShort(step.typ)].InSync && nodeStatus(t, h, "look-delta").Types[snapshotShort(step.typ)].InSync
		})
		if n := server.FullScans(h.srv) - before; n != 0 {
			t.Errorf("the change of %s made %d watches look at every resource; want 0", step.name, n)
		}
	}

	// Host h3 goes (its route and cluster): Delta is told of the removal.
	var kept []string
	for _, line := range strings.Split(cfg, "\n") {
		if !strings.Contains(line, "h3.test") && !strings.Contains(line, "name: c3,") {
			kept = append(kept, line)
		}
	}
	h.srv.Push(buildSet(t, strings.Join(kept, "\n")))
	// (The cluster goes once the node accepted routes that no longer use
	// it: make before break.)
	removed := map[string]bool{}
	for i := 0; i < 10 && !(removed["c3"] && removed["routes/public/h3.test"]); i++ {
		dr, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range dr.GetRemovedResources() {
			removed[n] = true
		}
		if err := d.Ack(dr); err != nil {
			t.Fatal(err)
		}
	}
	if !removed["c3"] || !removed["routes/public/h3.test"] {
		t.Errorf("Delta removals after h3 went: %v; want c3 and routes/public/h3.test", removed)
	}
}

func snapshotShort(typ string) string {
	return map[string]string{resourcev3.EndpointType: "endpoints", resourcev3.RouteType: "routes"}[typ]
}
