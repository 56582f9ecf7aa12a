package server

import (
	"strings"
	"testing"
	"unsafe"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// TestResumingDeltaNodesShareVersions: the versions a resuming Delta
// node names are replaced by the served set's own strings when equal
// (one copy for all nodes), and left alone when not.
func TestResumingDeltaNodesShareVersions(t *testing.T) {
	cfg, err := config.LoadBytes("gatehouse.yaml", []byte(`apiVersion: gatehouse/v1
listeners: [{name: public, address: 0.0.0.0:8080}]
clusters: [{name: orders, endpoints: [{address: 10.0.0.1:80}]}, {name: users, endpoints: [{address: 10.0.0.2:80}]}]
routes: [{id: orders, match: {prefix: /orders}, cluster: orders}]
`), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	set, err := snapshot.Build(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Push(set)
	own := set.ResourceVersion(resourcev3.ClusterType, "orders")
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: map[string]string{
		"orders": strings.Clone(own), "users": "stale", "gone": "x",
	}}
	s.shareVersions(req)
	iv := req.GetInitialResourceVersions()
	if unsafe.StringData(iv["orders"]) != unsafe.StringData(own) {
		t.Error("the version of orders, equal to the set's, is not the set's string")
	}
	if iv["users"] != "stale" || iv["gone"] != "x" {
		t.Errorf("versions that differ were changed: %v", iv)
	}
}
