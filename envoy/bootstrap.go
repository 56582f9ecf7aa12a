// Package envoy holds the Envoy bootstrap gatehouse ships
// (bootstrap.yaml, embedded) and fills it in for one Envoy: its node, the
// address of gatehouse's xDS server and its own admin address. The
// end-to-end harness and the load scenarios run Envoy on exactly this
// file, with nothing else changed.
package envoy

import (
	_ "embed"
	"fmt"
	"net"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// BootstrapYAML is envoy/bootstrap.yaml.
//
//go:embed bootstrap.yaml
var BootstrapYAML []byte

// Options say what to fill in.
type Options struct {
	// NodeID is node.id; NodeCluster, when set, replaces node.cluster.
	NodeID, NodeCluster string
	// XDS is host:port of gatehouse's ADS server.
	XDS string
	// Admin is host:port of Envoy's admin API.
	Admin string
	// Delta sets api_type DELTA_GRPC (incremental xDS) in place of GRPC.
	Delta bool
}

// Bootstrap returns the bootstrap as a YAML document (maps and lists) with
// the options filled in, for a caller that adds to it.
func Bootstrap(o Options) (map[string]any, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(BootstrapYAML, &doc); err != nil {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: %w", err)
	}
	node, ok := dig(doc, "node").(map[string]any)
	if !ok {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: no node")
	}
	node["id"] = o.NodeID
	if o.NodeCluster != "" {
		node["cluster"] = o.NodeCluster
	}
	if err := setSocket(dig(doc, "admin", "address", "socket_address"), o.Admin); err != nil {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: admin: %w", err)
	}
	found := false
	clusters, _ := dig(doc, "static_resources", "clusters").([]any)
	for _, c := range clusters {
		if dig(c, "name") != "gatehouse.xds" {
			continue
		}
		found = true
		eps, _ := dig(c, "load_assignment", "endpoints").([]any)
		if len(eps) == 0 {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds has no endpoints")
		}
		lb, _ := dig(eps[0], "lb_endpoints").([]any)
		if len(lb) == 0 {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds has no lb_endpoints")
		}
		if err := setSocket(dig(lb[0], "endpoint", "address", "socket_address"), o.XDS); err != nil {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: gatehouse.xds: %w", err)
		}
	}
	if !found {
		return nil, fmt.Errorf("envoy/bootstrap.yaml: no static cluster gatehouse.xds")
	}
	if o.Delta {
		ads, ok := dig(doc, "dynamic_resources", "ads_config").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("envoy/bootstrap.yaml: no ads_config")
		}
		ads["api_type"] = "DELTA_GRPC"
	}
	return doc, nil
}

// Render returns the filled-in bootstrap as YAML.
func Render(o Options) ([]byte, error) {
	doc, err := Bootstrap(o)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(doc)
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func setSocket(v any, addr string) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("no socket_address to set to %s", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	m["address"], m["port_value"] = host, p
	return nil
}
