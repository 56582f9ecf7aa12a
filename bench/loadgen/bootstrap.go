package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"

	envoyboot "github.com/gatehouse/gatehouse/envoy"
)

// runBootstrap prints envoy/bootstrap.yaml filled in for one Envoy, plus a
// static listener that proxies straight to an upstream with nothing but
// the router: the baseline "Envoy without gatehouse" of the load scenario,
// in the same Envoy process (same workers) as the listener gatehouse
// configures.
func runBootstrap(args []string) error {
	fs := flag.NewFlagSet("envoy-bootstrap", flag.ExitOnError)
	node := fs.String("node", "envoy-bench-1", "node id")
	xds := fs.String("xds", "127.0.0.1:9194", "gatehouse's ADS address")
	admin := fs.String("admin", "127.0.0.1:9901", "Envoy's admin address")
	direct := fs.String("direct", "", "listen address of the static baseline listener (empty: none)")
	upstream := fs.String("upstream", "", "host:port the baseline listener proxies to")
	_ = fs.Parse(args)
	doc, err := envoyboot.Bootstrap(envoyboot.Options{NodeID: *node, XDS: *xds, Admin: *admin})
	if err != nil {
		return err
	}
	if *direct != "" {
		if *upstream == "" {
			return fmt.Errorf("-direct needs -upstream")
		}
		l, err := socket(*direct)
		if err != nil {
			return err
		}
		u, err := socket(*upstream)
		if err != nil {
			return err
		}
		sr := doc["static_resources"].(map[string]any)
		sr["listeners"] = []any{map[string]any{
			"name":    "direct",
			"address": map[string]any{"socket_address": l},
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
				"name": "envoy.filters.network.http_connection_manager",
				"typed_config": map[string]any{
					"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
					"stat_prefix": "direct",
					"route_config": map[string]any{"virtual_hosts": []any{map[string]any{
						"name": "direct", "domains": []any{"*"},
						"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "direct_upstream"}}},
					}}},
					"http_filters": []any{map[string]any{
						"name":         "envoy.filters.http.router",
						"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
					}},
				},
			}}}},
		}}
		sr["clusters"] = append(sr["clusters"].([]any), map[string]any{
			"name": "direct_upstream", "type": "STATIC", "connect_timeout": "1s",
			"load_assignment": map[string]any{"cluster_name": "direct_upstream", "endpoints": []any{map[string]any{
				"lb_endpoints": []any{map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": u}}}},
			}}},
		})
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func socket(addr string) (map[string]any, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", addr, err)
	}
	return map[string]any{"address": host, "port_value": p}, nil
}
