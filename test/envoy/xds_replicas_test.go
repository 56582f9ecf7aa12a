package envoy_test

import (
	"context"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse/gatehouse/test/harness"
	"github.com/gatehouse/gatehouse/xds/adsclient"
)

// TestXDSReplicasServeSameVersions: two gatehouse processes on the same
// config serve the same version of every resource type (content hashes:
// nothing of the process goes in). A client that synced with the second,
// then reconnects to it naming those versions, is sent nothing: a change
// of one host's routes reaches it as that route configuration alone.
func TestXDSReplicasServeSameVersions(t *testing.T) {
	// The same config for both: Envoy reaches replica 0's ext_authz (each
	// replica's own listen address would make their clusters differ).
	same := func(c string) string {
		return strings.Replace(c, "routeSplit: host}", "routeSplit: host, services: {authz: \"{{(.Replica 0).Authz}}\"}}", 1)
	}
	m := harness.Start(t, harness.Options{Config: same(splitConfig("a")), Upstreams: []string{"a", "b"}, Replicas: 2})
	node, err := m.Gatehouse[0].Node("envoy-e2e-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(m.Addrs(1).XDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Sync with replica 1 as an Envoy of the same group would.
	sctx, scancel := context.WithCancel(ctx)
	s, err := adsclient.NewSotW(sctx, conn, &corev3.Node{Id: "probe", Cluster: "edge", UserAgentName: "envoy"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*discoveryv3.DiscoveryResponse{}
	names := map[string][]string{}
	step := func(typ string, want ...string) {
		t.Helper()
		if err := s.Request(typ, want...); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetTypeUrl() != typ {
			t.Fatalf("got %s; want %s", r.GetTypeUrl(), typ)
		}
		if err := s.Ack(r, want...); err != nil {
			t.Fatal(err)
		}
		got[typ], names[typ] = r, want
	}
	step(resourcev3.ClusterType)
	var eds []string
	for _, a := range got[resourcev3.ClusterType].GetResources() {
		c := &clusterv3.Cluster{}
		if a.UnmarshalTo(c) == nil && c.GetType() == clusterv3.Cluster_EDS {
			eds = append(eds, c.GetName())
		}
	}
	sort.Strings(eds)
	step(resourcev3.EndpointType, eds...)
	step(resourcev3.ListenerType)
	step(resourcev3.ScopedRouteType)
	var units []string
	for _, a := range got[resourcev3.ScopedRouteType].GetResources() {
		sc := &routev3.ScopedRouteConfiguration{}
		if a.UnmarshalTo(sc) == nil {
			units = append(units, sc.GetRouteConfigurationName())
		}
	}
	sort.Strings(units)
	units = slices.Compact(units)
	step(resourcev3.RouteType, units...)

	for typ, short := range map[string]string{resourcev3.ClusterType: "clusters", resourcev3.EndpointType: "endpoints",
		resourcev3.ListenerType: "listeners", resourcev3.ScopedRouteType: "scoped_routes", resourcev3.RouteType: "routes"} {
		if v := got[typ].GetVersionInfo(); v != node.Types[short].Current {
			t.Errorf("%s: replica 1 serves version %s, replica 0 %s", short, v, node.Types[short].Current)
		}
	}
	scancel()

	// Reconnect to replica 1 naming those versions, then change one host.
	s, err = adsclient.NewSotW(ctx, conn, &corev3.Node{Id: "probe", Cluster: "edge", UserAgentName: "envoy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.ScopedRouteType, resourcev3.RouteType} {
		if err := s.Resume(typ, got[typ].GetVersionInfo(), names[typ]...); err != nil {
			t.Fatal(err)
		}
	}
	// Let the requests in before the change (a reconnect answered would
	// come first either way; the wait makes sure they were read).
	time.Sleep(500 * time.Millisecond)
	// (Only b.test's routes change: the clusters stay the same.)
	m.Reload(same(strings.Replace(splitConfig("a"), "match: {hosts: [b.test, b2.test], prefix: /}", "match: {hosts: [b.test, b2.test], prefix: /b}", 1)))
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var rs []string
	for _, a := range r.GetResources() {
		rc := &routev3.RouteConfiguration{}
		if a.UnmarshalTo(rc) == nil {
			rs = append(rs, rc.GetName())
		}
	}
	if r.GetTypeUrl() != resourcev3.RouteType || !slices.Equal(rs, []string{"routes/public/b.test"}) {
		t.Errorf("first response after reconnecting to replica 1: %s %v (version %s, %d resources); want routes/public/b.test alone", r.GetTypeUrl(), rs, r.GetVersionInfo(), len(r.GetResources()))
	}
}
