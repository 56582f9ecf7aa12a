package server_test

import (
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
