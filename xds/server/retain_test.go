package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/xds/adsclient"
)

const retainA = `apiVersion: gatehouse/v1
xds: {}
listeners: [{name: public, address: "127.0.0.1:10000"}]
clusters:
  - {name: a, endpoints: [{address: "127.0.0.1:8001"}]}
  - {name: b, endpoints: [{address: "127.0.0.1:8002"}]}
routes:
  - {id: v, match: {prefix: /v}, cluster: CLUSTER}
`

// TestMakeBeforeBreak: a config that moves a route from cluster a to a
// new cluster b (dropping a) reaches a node in the order the xDS protocol
// asks: clusters a and b first, b's endpoints, then the routes on b — not
// before the node accepted b with its endpoints —, and only once the node
// accepted those routes is a removed. Envoy applies each type as it comes:
// the routes before b is warm, or a's removal before the routes moved,
// answer 503 cluster_not_found (seen through a real Envoy).
func TestMakeBeforeBreak(t *testing.T) {
	h := start(t)
	cfg := func(c string) string { return strings.ReplaceAll(retainA, "CLUSTER", c) }
	h.srv.Push(buildSet(t, cfg("a")))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("r1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(r *discoveryv3.DiscoveryResponse) []string {
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
	// expect receives a response of typ holding exactly want, and ACKs it
	// (subscribing to sub by name, as Envoy does for EDS and RDS).
	expect := func(typ string, want []string, sub ...string) *discoveryv3.DiscoveryResponse {
		t.Helper()
		r := recvType(t, s, typ)
		if got := names(r); !slices.Equal(got, want) {
			t.Fatalf("%s response holds %v; want %v", typ, got, want)
		}
		if err := s.Ack(r, sub...); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, req := range []struct {
		typ   string
		names []string
	}{{resourcev3.ClusterType, nil}, {resourcev3.EndpointType, []string{"a"}}, {resourcev3.ListenerType, nil}, {resourcev3.RouteType, []string{"routes/public"}}} {
		if err := s.Request(req.typ, req.names...); err != nil {
			t.Fatal(err)
		}
		r := recvType(t, s, req.typ)
		if err := s.Ack(r, req.names...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "r1").Types["routes"].InSync })

	h.srv.Push(buildSet(t, cfg("b")))
	// 1. the new cluster, beside the one the accepted routes still use;
	expect(resourcev3.ClusterType, []string{"a", "b"})
	// 2. its endpoints, once asked for (nothing else comes before; a's,
	// unchanged, are not sent again);
	if err := s.Request(resourcev3.EndpointType, "a", "b"); err != nil {
		t.Fatal(err)
	}
	expect(resourcev3.EndpointType, []string{"b"}, "a", "b")
	// 3. then the routes that use it;
	expect(resourcev3.RouteType, []string{"routes/public"}, "routes/public")
	// 4. and, the routes accepted, the clusters without a, and the new
	// endpoints version, in either order. (State-of-the-World endpoints
	// need not name a removed load assignment; b's did not change, so
	// that response carries nothing.)
	for range 2 {
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"b"}
		switch r.GetTypeUrl() {
		case resourcev3.ClusterType:
		case resourcev3.EndpointType:
			want = nil
		default:
			t.Fatalf("got a %s response; want the clusters and endpoints without a", r.GetTypeUrl())
		}
		if got := names(r); !slices.Equal(got, want) {
			t.Errorf("%s after the routes moved: %v; want %v", r.GetTypeUrl(), got, want)
		}
	}
	_ = s.CloseSend()
}

// TestMakeBeforeBreakAfterDeltaResume: a Delta node that reconnects
// naming what it holds is sent nothing for its load assignments and
// route configurations, so no ACK says it holds them; the next change
// still goes make before break from them: the new cluster and its
// endpoints before the routes that use it.
func TestMakeBeforeBreakAfterDeltaResume(t *testing.T) {
	h := start(t)
	cfg := func(c string) string { return strings.ReplaceAll(retainA, "CLUSTER", c) }
	h.srv.Push(buildSet(t, cfg("a")))
	ctx1, cancel1 := context.WithCancel(h.ctx)
	d, err := adsclient.NewDelta(ctx1, h.conn, envoyNode("r2", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	subs := []struct {
		typ   string
		names []string
	}{{resourcev3.ClusterType, nil}, {resourcev3.EndpointType, []string{"a"}}, {resourcev3.ListenerType, nil}, {resourcev3.RouteType, []string{"routes/public"}}}
	have := map[string]map[string]string{}
	for _, sub := range subs {
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
	waitFor(t, func() bool { return !nodeStatus(t, h, "r2").Connected })

	d2, err := adsclient.NewDelta(h.ctx, h.conn, envoyNode("r2", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range subs {
		if err := d2.Resume(sub.typ, have[sub.typ], sub.names...); err != nil {
			t.Fatal(err)
		}
	}
	// The wildcard types are answered (empty: Envoy waits for it).
	for range 2 {
		r, err := d2.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.GetResources()) != 0 {
			t.Fatalf("resume answered with %s %v; want nothing", r.GetTypeUrl(), adsclient.Names(r))
		}
		if err := d2.Ack(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		st := nodeStatus(t, h, "r2").Types
		for _, k := range []string{"clusters", "endpoints", "listeners", "routes"} {
			if st[k] == nil || !st[k].InSync {
				return false
			}
		}
		return true
	})

	h.srv.Push(buildSet(t, cfg("b")))
	r, err := d2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resourcev3.ClusterType || !slices.Equal(adsclient.Names(r), []string{"b"}) {
		t.Fatalf("first response after the change: %s %v; want the new cluster b alone", r.GetTypeUrl(), adsclient.Names(r))
	}
	if err := d2.Ack(r); err != nil {
		t.Fatal(err)
	}
	if err := d2.Subscribe(resourcev3.EndpointType, "b"); err != nil {
		t.Fatal(err)
	}
	// Before the routes: b's endpoints.
	r, err = d2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resourcev3.EndpointType || !slices.Equal(adsclient.Names(r), []string{"b"}) {
		t.Fatalf("second response: %s %v; want b's endpoints (the routes only once b is accepted)", r.GetTypeUrl(), adsclient.Names(r))
	}
	if err := d2.Ack(r); err != nil {
		t.Fatal(err)
	}
	r, err = d2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetTypeUrl() != resourcev3.RouteType {
		t.Fatalf("third response: %s; want the routes on b", r.GetTypeUrl())
	}
	_ = d2.CloseSend()
}
