package snapshot_test

import (
	"bytes"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

const base = `apiVersion: gatehouse/v1
authz: {}
xds:
  nodeGroups:
    - {name: edge, nodeClusters: [edge], listeners: [public]}
    - {name: grpc, nodeIds: [client-1], listeners: [echo.test]}
listeners:
  - {name: public, address: 0.0.0.0:8080}
  - {name: internal, address: 0.0.0.0:8081}
  - {name: echo.test, kind: grpc}
clusters:
  - {name: a, endpoints: [{address: 10.0.0.1:80}]}
  - {name: b, endpoints: [{address: 10.0.0.2:80}]}
  - {name: echo, endpoints: [{address: 127.0.0.1:5000}]}
routes:
  - {id: r1, match: {prefix: /a}, cluster: a}
  - {id: r2, match: {prefix: /b}, cluster: b, listeners: [internal]}
  - {id: grpc, match: {prefix: /}, cluster: echo, listeners: [echo.test]}
`

func build(t *testing.T, yaml string) *snapshot.Set {
	t.Helper()
	cfg, err := config.LoadBytes("test.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatalf("Translate() = %v", err)
	}
	set, err := snapshot.Build(cfg, res)
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	return set
}

func resourceNames(set *snapshot.Set, group string, f snapshot.Flavour, typ string) []string {
	var out []string
	for n := range set.Group(group).Snapshot(f).GetResources(typ) {
		out = append(out, n)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestGroups(t *testing.T) {
	set := build(t, base)
	tests := []struct {
		group string
		f     snapshot.Flavour
		typ   string
		want  []string
	}{
		{"default", snapshot.Envoy, resourcev3.ListenerType, []string{"listener/internal", "listener/public"}},
		{"default", snapshot.Envoy, resourcev3.ClusterType, []string{"a", "b", "gatehouse.authz"}},
		{"edge", snapshot.Envoy, resourcev3.ListenerType, []string{"listener/public"}},
		{"edge", snapshot.Envoy, resourcev3.ClusterType, []string{"a", "gatehouse.authz"}},
		{"edge", snapshot.Envoy, resourcev3.EndpointType, []string{"a"}},
		{"edge", snapshot.GRPC, resourcev3.ListenerType, nil},
		{"grpc", snapshot.GRPC, resourcev3.ListenerType, []string{"echo.test"}},
		{"grpc", snapshot.GRPC, resourcev3.RouteType, []string{"routes/echo.test"}},
		{"grpc", snapshot.GRPC, resourcev3.ClusterType, []string{"echo"}},
	}
	for _, tt := range tests {
		got := resourceNames(set, tt.group, tt.f, tt.typ)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("group %s %s %s (-want +got):\n%s", tt.group, tt.f, snapshot.ShortType(tt.typ), diff)
		}
	}
	for _, tt := range []struct {
		node *corev3.Node
		want string
	}{
		{&corev3.Node{Id: "client-1", Cluster: "edge"}, "grpc"}, // id wins over cluster
		{&corev3.Node{Id: "e1", Cluster: "edge"}, "edge"},
		{&corev3.Node{Id: "x"}, "default"},
	} {
		if got := set.GroupOf(tt.node).Name; got != tt.want {
			t.Errorf("GroupOf(%v) = %q; want %q", tt.node, got, tt.want)
		}
	}
}

// TestVersions: versions are content hashes. The same config (even
// reformatted) gives the same versions; one changed route changes only
// the route configuration's version, and only in the groups that get it.
func TestVersions(t *testing.T) {
	a := build(t, base)
	b := build(t, strings.Replace(base, "apiVersion: gatehouse/v1\n", "apiVersion: gatehouse/v1\n# a comment changes nothing\n", 1))
	if a.Version != b.Version {
		t.Errorf("Version = %s and %s for the same config; want equal", a.Version, b.Version)
	}
	if d := snapshot.Diff(a, b); len(d) != 0 {
		t.Errorf("Diff(same) = %v; want none", d)
	}
	c := build(t, strings.Replace(base, "{id: r2, match: {prefix: /b}", "{id: r2, match: {prefix: /bb}", 1))
	if a.Version == c.Version {
		t.Error("Version unchanged after a route change")
	}
	want := []snapshot.Change{{Type: "routes", Name: "routes/internal", Kind: snapshot.Changed}}
	if diff := cmp.Diff(want, snapshot.Diff(a, c)); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	for _, typ := range snapshot.TypeURLs {
		for _, g := range []string{"default", "edge"} {
			av := a.Group(g).Snapshot(snapshot.Envoy).GetVersion(typ)
			cv := c.Group(g).Snapshot(snapshot.Envoy).GetVersion(typ)
			changed := typ == resourcev3.RouteType && g == "default"
			if (av != cv) != changed {
				t.Errorf("group %s %s version %s → %s; want changed=%v", g, snapshot.ShortType(typ), av, cv, changed)
			}
		}
	}
	// Delta compares per-resource versions: only routes/internal moves.
	am := a.Group("default").Snapshot(snapshot.Envoy).GetVersionMap(resourcev3.RouteType)
	cm := c.Group("default").Snapshot(snapshot.Envoy).GetVersionMap(resourcev3.RouteType)
	if am["routes/public"] != cm["routes/public"] || am["routes/internal"] == cm["routes/internal"] {
		t.Errorf("version maps %v → %v; want only routes/internal changed", am, cm)
	}
}

// TestMembershipChangesVersion: moving nodes between groups is a new
// version even when no resource changes.
func TestMembershipChangesVersion(t *testing.T) {
	a := build(t, base)
	b := build(t, strings.Replace(base, "nodeClusters: [edge]", "nodeClusters: [edge, edge2]", 1))
	if a.Version == b.Version {
		t.Error("Version unchanged after a node group membership change")
	}
}

// TestInvalidResourceNamesConfig: a resource failing Envoy's rules is an
// error at the config element it came from; nothing is built.
func TestInvalidResource(t *testing.T) {
	cfg, err := config.LoadBytes("test.yaml", []byte(base), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt a cluster as a buggy translator might.
	res.Clusters[0].ConnectTimeout.Nanos = -1
	_, err = snapshot.Build(cfg, res)
	if err == nil || !strings.Contains(err.Error(), `clusters[0]: the Envoy resource "a" would be invalid`) {
		t.Errorf("Build(invalid cluster) = %v; want an error at clusters[0]", err)
	}
}

// TestTooLargeForOneMessage: a route table that cannot be sent in one
// response is refused with a way out, not pushed.
func TestTooLargeForOneMessage(t *testing.T) {
	yaml := strings.Replace(base, "apiVersion: gatehouse/v1\n", "apiVersion: gatehouse/v1\nserver: {grpc: {maxSendMessageSize: 1KiB}}\n", 1)
	cfg, err := config.LoadBytes("test.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = snapshot.Build(cfg, res)
	if err == nil || !strings.Contains(err.Error(), "server.grpc.maxSendMessageSize: the listeners of this config encode to") {
		t.Errorf("Build() = %v; want an error naming server.grpc.maxSendMessageSize", err)
	}
}

// TestInvalidPerRouteConfig: the typed config inside a route's Any is
// validated too (ValidateAll alone stops at the Any).
func TestInvalidPerRouteConfig(t *testing.T) {
	cfg, err := config.LoadBytes("test.yaml", []byte(base), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := anypb.New(&extauthzv3.ExtAuthzPerRoute{})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Routes[0].GetVirtualHosts()[0].GetRoutes()[0]
	r.TypedPerFilterConfig["envoy.filters.http.ext_authz"] = bad
	_, err = snapshot.Build(cfg, res)
	if err == nil || !strings.Contains(err.Error(), "ExtAuthzPerRoute") {
		t.Errorf("Build() = %v; want the invalid ExtAuthzPerRoute reported", err)
	}
}

// TestServedBytes: what the cache serves encodes to exactly the bytes of
// the translated resources (the shells are only a faster way to them).
func TestServedBytes(t *testing.T) {
	set := build(t, base)
	det := proto.MarshalOptions{Deterministic: true}
	for _, rc := range set.Resources.Routes {
		want, err := det.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		served := set.Group("default").Snapshot(snapshot.Envoy).GetResources(resourcev3.RouteType)[rc.GetName()]
		if served == nil {
			served = set.Group("grpc").Snapshot(snapshot.GRPC).GetResources(resourcev3.RouteType)[rc.GetName()]
		}
		got, err := cachev3.MarshalResource(served)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, got) {
			t.Errorf("served %s encodes to %d bytes that differ from the resource's %d", rc.GetName(), len(got), len(want))
		}
		back := &routev3.RouteConfiguration{}
		if err := proto.Unmarshal(got, back); err != nil || !proto.Equal(back, rc) {
			t.Errorf("served %s does not decode to the resource: %v", rc.GetName(), err)
		}
	}
}
