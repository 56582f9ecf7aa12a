package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"sort"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Accepted is what one node last accepted (ACKed) of each resource type:
// the snapshot it was sent each time, and the clusters that its accepted
// listeners and routes send requests to.
type Accepted struct {
	Clusters, Endpoints, Listeners, Routes *cachev3.Snapshot
	// InUse are the clusters the accepted listeners and routes use.
	InUse []string
}

// Stage returns what a node that accepted acc is sent of next, whose
// listeners and routes use the clusters needs. It orders a change make
// before break, as the xDS protocol asks of a control plane (Envoy
// applies each type as it arrives and does not wait for a cluster to warm
// before a route uses it):
//
//   - clusters (and their load assignments) that the node's accepted
//     routes still use are kept, though next drops them, until the node
//     accepts routes that no longer use them;
//   - listeners and routes stay at the accepted ones while next's use a
//     cluster the node has not accepted yet (with its load assignment, for
//     an EDS cluster): the new clusters go first, then the routes.
//
// Without it Envoy answers 503 (cluster_not_found) between the cluster
// and the route updates of one change, and for good when it rejects part
// of the change. A node that accepted nothing yet gets next as is: Envoy's
// initial fetch warms clusters before listeners itself.
func Stage(next *cachev3.Snapshot, needs []string, acc Accepted) *cachev3.Snapshot {
	if next == nil {
		return nil
	}
	out := retain(next, acc.Routes, acc.InUse)
	if acc.Listeners == nil || acc.Routes == nil || ready(out, needs, acc) {
		return out
	}
	if out == next {
		out = &cachev3.Snapshot{Resources: next.Resources, VersionMap: maps.Clone(next.VersionMap)}
	}
	for _, typ := range []string{resourcev3.ListenerType, resourcev3.ScopedRouteType, resourcev3.RouteType} {
		from := acc.Listeners
		if typ != resourcev3.ListenerType {
			// The scopes that select the accepted routes.
			from = acc.Routes
		}
		i := cachev3.GetResponseType(typ)
		out.Resources[i] = from.Resources[i]
		out.VersionMap[typ] = from.VersionMap[typ]
	}
	return out
}

// ready reports whether the node accepted every cluster of needs, and the
// load assignment of each that has one in snap.
func ready(snap *cachev3.Snapshot, needs []string, acc Accepted) bool {
	if acc.Clusters == nil {
		return len(needs) == 0
	}
	clusters := acc.Clusters.GetResourcesAndTTL(resourcev3.ClusterType)
	eds := snap.GetResourcesAndTTL(resourcev3.EndpointType)
	var endpoints map[string]string
	if acc.Endpoints != nil {
		endpoints = acc.Endpoints.VersionMap[resourcev3.EndpointType]
	}
	for _, c := range needs {
		if _, ok := clusters[c]; !ok {
			return false
		}
		if _, isEDS := eds[c]; isEDS {
			if _, ok := endpoints[c]; !ok {
				return false
			}
		}
	}
	return true
}

// retain returns snap with the clusters named keep, and their load
// assignments, copied from old wherever snap lacks them; snap itself when
// it lacks none (or old has none of them).
func retain(snap, old *cachev3.Snapshot, keep []string) *cachev3.Snapshot {
	if old == nil {
		return snap
	}
	have := snap.GetResourcesAndTTL(resourcev3.ClusterType)
	oldClusters := old.GetResourcesAndTTL(resourcev3.ClusterType)
	var missing []string
	for _, name := range keep {
		if _, ok := have[name]; ok {
			continue
		}
		if _, ok := oldClusters[name]; ok {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return snap
	}
	sort.Strings(missing)
	out := &cachev3.Snapshot{Resources: snap.Resources, VersionMap: maps.Clone(snap.VersionMap)}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		items := maps.Clone(snap.GetResourcesAndTTL(typ))
		vm := maps.Clone(snap.VersionMap[typ])
		if vm == nil {
			vm = map[string]string{}
		}
		from := old.GetResourcesAndTTL(typ)
		h := sha256.New()
		fmt.Fprintf(h, "%s\n", snap.GetVersion(typ))
		for _, name := range missing {
			r, ok := from[name]
			if !ok {
				continue // a cluster without EDS has no load assignment
			}
			items[name] = r
			vm[name] = old.VersionMap[typ][name]
			fmt.Fprintf(h, "retained %s %s\n", name, vm[name])
		}
		i := cachev3.GetResponseType(typ)
		out.Resources[i] = cachev3.Resources{Version: hex.EncodeToString(h.Sum(nil)[:8]), Items: items}
		out.VersionMap[typ] = vm
	}
	return out
}

// Names lists the names of a snapshot's resources of one type, sorted.
func Names(snap *cachev3.Snapshot, typeURL string) []string {
	if snap == nil {
		return nil
	}
	var out []string
	for name := range snap.GetResourcesAndTTL(typeURL) {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
