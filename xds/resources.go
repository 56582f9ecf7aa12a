package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/render"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// This file is the xds facade for commands: everything `gatehouse render`
// (and a static bootstrap made of the same resources) needs, so that no
// command reaches into xds/translate, xds/snapshot or xds/render.

// Resources are the Envoy resources of a config, in config order: the
// listeners, route configurations, clusters and load assignments, as the
// go-control-plane messages xDS pushes.
type Resources = translate.Resources

// Format is an output format of Marshal.
type Format = render.Format

// Output formats.
const (
	YAML = render.YAML
	JSON = render.JSON
)

// Render returns the Envoy resources the control plane pushes for cfg,
// built and validated exactly as a reload builds them (every resource
// passes Envoy's validation rules, every group's snapshot is consistent).
// With group "" it returns every resource; otherwise exactly what the
// Envoy proxies of the named node group receive (config.DefaultNodeGroup,
// or xds.defaultGroup, is the group of proxies no group claims).
//
// cfg must have passed config loading; problems found while building are
// config.Errors naming the config element. An unknown group is a plain
// error listing the groups there are.
func Render(cfg *config.Config, group string) (*Resources, error) {
	set, err := Build(cfg)
	if err != nil {
		return nil, err
	}
	if group == "" {
		return set.Resources, nil
	}
	g := set.Group(group)
	if g == nil {
		return nil, fmt.Errorf("no node group is named %q (groups: %v)", group, set.Groups())
	}
	// Envoy proxies receive the group's HTTP listeners; its gRPC API
	// listeners go to proxyless gRPC clients.
	return set.Resources.Subset(g.Listeners, config.ListenerHTTP), nil
}

// Marshal prints res in Envoy's own field names (snake_case), as YAML or
// JSON; the same resources always give the same bytes.
func Marshal(res *Resources, f Format) ([]byte, error) { return render.Resources(res, f) }

// Diff describes what changing old into cur does to the resources, one
// cluster, load assignment, listener or route at a time, for review. It
// returns "" when nothing changes.
func Diff(old, cur *Resources) (string, error) { return render.Diff(old, cur) }

// Bootstrap prints a static Envoy bootstrap holding exactly the Envoy
// listeners of res and what they use (routes inlined, load assignments in
// their clusters), with the given node, for `envoy --mode validate`.
func Bootstrap(res *Resources, nodeID, nodeCluster string, f Format) ([]byte, error) {
	bs, err := render.Bootstrap(res.Subset(nil, config.ListenerHTTP), &corev3.Node{Id: nodeID, Cluster: nodeCluster})
	if err != nil {
		return nil, err
	}
	return render.Message(bs, f)
}
