// Package snapshot turns translated resources into go-control-plane
// snapshots, one per node group and kind of client, and checks them before
// anything is pushed: every resource passes its generated ValidateAll()
// rules and every snapshot is Consistent().
//
// Versions are content hashes: a resource's version is the hash of its
// deterministic encoding, a type's version the hash of its resources'
// names and versions. The same config gives the same versions on every
// replica, and a reload that changes nothing changes no version, so
// nothing is pushed.
package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/parallel"
	"github.com/gatehouse/gatehouse/xds/translate"
)

// Flavour is the kind of xDS client a snapshot is for.
type Flavour string

// Flavours.
const (
	// Envoy proxies receive the http listeners.
	Envoy Flavour = "envoy"
	// GRPC is proxyless gRPC clients: they receive the grpc (API)
	// listeners.
	GRPC Flavour = "grpc"
)

// TypeURLs are the resource types gatehouse serves, in the order Envoy
// wants them applied (clusters before the listeners and routes that use
// them). Scoped routes (SRDS) exist only for a listener whose routes are
// split by host (translate's routesplit.go).
var TypeURLs = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.ScopedRouteType, resourcev3.RouteType}

// Chunked reports whether the server may send the resources of a type
// over several responses (route configurations and load assignments:
// State-of-the-World clients keep those they are not sent again).
func Chunked(typeURL string) bool {
	return typeURL == resourcev3.RouteType || typeURL == resourcev3.EndpointType
}

// ChunkBudget is how many bytes of resources one response carries at
// most, for a largest message of max bytes: the rest is headroom for the
// envelope.
func ChunkBudget(max int) int { return max - max/8 }

// ShortType names a type URL for metrics, logs and /xds/nodes.
func ShortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "clusters"
	case resourcev3.EndpointType:
		return "endpoints"
	case resourcev3.ListenerType:
		return "listeners"
	case resourcev3.RouteType:
		return "routes"
	case resourcev3.ScopedRouteType:
		return "scoped_routes"
	}
	return "other"
}

// Set is everything one config serves: the resources, and a snapshot per
// node group and flavour. It is immutable once built.
type Set struct {
	// Version is the hash of every resource of the config.
	Version string
	// Resources are the translated resources (with their origins).
	Resources *translate.Resources

	groups   map[string]*Group
	byID     map[string]string
	byClust  map[string]string
	defGroup string
	// hashes holds each resource's version by type URL and name.
	hashes map[string]map[string]string
	// sizes holds each resource's encoded size by type URL and name.
	sizes map[string]map[string]int
	// served holds the pre-encoded shells served in place of every
	// resource (see preEncoded).
	served map[types.Resource]types.Resource
	// anys holds each shell's encoding as an Any, shared by every
	// State-of-the-World response that carries it (AnyOf).
	anys map[types.Resource]*anypb.Any
	// maxMessage is the largest response the ADS server may send.
	maxMessage int
}

// Group is the snapshots of one node group.
type Group struct {
	Name string
	// Listeners are the gatehouse listener names the group receives; nil
	// means all.
	Listeners []string
	snaps     map[Flavour]*cachev3.Snapshot
}

// Snapshot returns the group's snapshot for a flavour of client.
func (g *Group) Snapshot(f Flavour) *cachev3.Snapshot { return g.snaps[f] }

// Build validates res and makes the snapshots of every node group of cfg.
// An error lists every resource that fails validation, with the config
// element it came from; nothing of an invalid set is ever served.
func Build(cfg *config.Config, res *translate.Resources) (*Set, error) {
	s := &Set{
		Resources: res,
		groups:    map[string]*Group{},
		byID:      map[string]string{},
		byClust:   map[string]string{},
		defGroup:  config.DefaultNodeGroup,
		hashes:    map[string]map[string]string{},
		sizes:     map[string]map[string]int{},
		served:    map[types.Resource]types.Resource{},
		anys:      map[types.Resource]*anypb.Any{},
		// A limit of 0 (a config built in Go, not loaded) means 4MiB,
		// gRPC's default.
		maxMessage: 4 << 20,
	}
	if cfg.Server.GRPC.MaxSendMessageSize > 0 {
		s.maxMessage = int(cfg.Server.GRPC.MaxSendMessageSize)
	}
	if err := validateAll(res); err != nil {
		return nil, err
	}
	if err := s.hashAll(res); err != nil {
		return nil, err
	}
	var groups []config.NodeGroup
	if cfg.XDS != nil {
		groups = cfg.XDS.NodeGroups
		if cfg.XDS.DefaultGroup != "" {
			s.defGroup = cfg.XDS.DefaultGroup
		}
	}
	if err := s.addGroup(config.DefaultNodeGroup, nil); err != nil {
		return nil, err
	}
	for _, g := range groups {
		if err := s.addGroup(g.Name, g.Listeners); err != nil {
			return nil, err
		}
		for _, id := range g.NodeIDs {
			s.byID[id] = g.Name
		}
		for _, c := range g.NodeClusters {
			s.byClust[c] = g.Name
		}
	}
	if _, ok := s.groups[s.defGroup]; !ok {
		return nil, fmt.Errorf("xds.defaultGroup: no node group is named %q", s.defGroup)
	}
	s.Version = s.fingerprint()
	return s, nil
}

// validateAll runs the generated validation rules of every resource. Each
// problem is reported at the config element the resource came from. The
// resources are validated in parallel (one validator per worker); the
// errors are reported in resource order.
func validateAll(res *translate.Resources) error {
	type item struct {
		name string
		m    proto.Message
	}
	var items []item
	for _, typ := range TypeURLs {
		for _, r := range resourcesOf(res, typ) {
			items = append(items, item{cachev3.GetResourceName(r), r})
		}
	}
	results := make([]error, len(items))
	parallel.Do(len(items), func() func(int) {
		d := &deepValidator{seen: map[string]error{}}
		return func(i int) { results[i] = d.validate(items[i].m, 0) }
	})
	var errs config.Errors
	for i, err := range results {
		if err == nil {
			continue
		}
		p := config.Path("xds")
		if os := res.Origins[items[i].name]; len(os) > 0 {
			p = os[0].Path
		}
		errs.Add(p, "the Envoy resource %q would be invalid: %v", items[i].name, err)
	}
	return errs.Err()
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// hashOf is a resource's version: the whole SHA-256 of its deterministic
// encoding, in hex. It is exactly the version go-control-plane puts on the
// wire for a Delta resource (cachev3.HashResource of MarshalResource), so
// that a node reconnecting with the versions it was sent (Delta's
// initial_resource_versions) matches the snapshot's and is sent nothing.
func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashAll computes each resource's version once (encoding in parallel);
// every group's snapshot reuses them.
func (s *Set) hashAll(res *translate.Resources) error {
	type encoded struct {
		typ, name, hash string
		r, shell        types.Resource
		b               []byte
		err             error
	}
	var items []encoded
	for _, typ := range TypeURLs {
		for _, r := range resourcesOf(res, typ) {
			items = append(items, encoded{typ: typ, name: cachev3.GetResourceName(r), r: r})
		}
	}
	parallel.Do(len(items), func() func(int) {
		return func(i int) {
			e := &items[i]
			if e.b, e.err = deterministic.Marshal(e.r); e.err != nil {
				return
			}
			e.hash = hashOf(e.b)
			e.shell, e.err = preEncoded(e.r, e.b)
		}
	})
	all := sha256.New()
	for _, typ := range TypeURLs {
		s.hashes[typ] = map[string]string{}
		s.sizes[typ] = map[string]int{}
	}
	for _, e := range items {
		if e.err != nil {
			return fmt.Errorf("encode %s: %w", e.name, e.err)
		}
		m := s.hashes[e.typ]
		if _, dup := m[e.name]; dup {
			return fmt.Errorf("two %s resources are named %q", ShortType(e.typ), e.name)
		}
		m[e.name] = e.hash
		s.sizes[e.typ][e.name] = len(e.b)
		if e.shell != nil {
			s.served[e.r] = e.shell
			s.anys[e.shell] = &anypb.Any{TypeUrl: e.typ, Value: e.b}
		}
		fmt.Fprintf(all, "%s\x00%s\x00%s\n", e.typ, e.name, e.hash)
	}
	s.Version = hex.EncodeToString(all.Sum(nil)[:12])
	return nil
}

// fingerprint is the set's version: its resources and who gets which of
// them, so that a change of group membership alone is a new version too.
func (s *Set) fingerprint() string {
	h := sha256.New()
	fmt.Fprintf(h, "resources %s\ndefault %s\n", s.Version, s.defGroup)
	for _, name := range s.Groups() {
		g := s.groups[name]
		fmt.Fprintf(h, "group %s", name)
		for _, f := range []Flavour{Envoy, GRPC} {
			for _, typ := range TypeURLs {
				fmt.Fprintf(h, " %s", g.snaps[f].GetVersion(typ))
			}
		}
		fmt.Fprintln(h)
	}
	for _, m := range []map[string]string{s.byID, s.byClust} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "member %q %s\n", k, m[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func resourcesOf(res *translate.Resources, typeURL string) []types.Resource {
	var out []types.Resource
	switch typeURL {
	case resourcev3.ListenerType:
		for _, r := range res.Listeners {
			out = append(out, r)
		}
	case resourcev3.RouteType:
		for _, r := range res.Routes {
			out = append(out, r)
		}
	case resourcev3.ScopedRouteType:
		for _, r := range res.ScopedRoutes {
			out = append(out, r)
		}
	case resourcev3.ClusterType:
		for _, r := range res.Clusters {
			out = append(out, r)
		}
	case resourcev3.EndpointType:
		for _, r := range res.Endpoints {
			out = append(out, r)
		}
	}
	return out
}

func (s *Set) addGroup(name string, listeners []string) error {
	g := &Group{Name: name, Listeners: listeners, snaps: map[Flavour]*cachev3.Snapshot{}}
	for _, fk := range []struct {
		f    Flavour
		kind config.ListenerKind
	}{{Envoy, config.ListenerHTTP}, {GRPC, config.ListenerGRPC}} {
		f := fk.f
		snap, err := s.snapshot(s.Resources.Subset(listeners, fk.kind), f)
		if err != nil {
			var errs config.Errors
			if errors.As(err, &errs) {
				return err
			}
			return fmt.Errorf("node group %q (%s clients): %w", name, f, err)
		}
		g.snaps[f] = snap
	}
	s.groups[name] = g
	return nil
}

// snapshot assembles one snapshot with per-type content versions and the
// per-resource version map Delta xDS compares, so that go-control-plane
// never has to re-encode resources to find what changed.
func (s *Set) snapshot(sub *translate.Resources, f Flavour) (*cachev3.Snapshot, error) {
	if err := consistent(sub); err != nil {
		return nil, fmt.Errorf("inconsistent snapshot: %w", err)
	}
	snap := &cachev3.Snapshot{VersionMap: map[string]map[string]string{}}
	// The real resources, for go-control-plane's consistency check (it
	// reads clusters and listeners; the served snapshot holds shells).
	real := &cachev3.Snapshot{}
	for _, typ := range TypeURLs {
		items := resourcesOf(sub, typ)
		names := make([]string, 0, len(items))
		vm := make(map[string]string, len(items))
		total, largest, largestName := 0, 0, ""
		for _, r := range items {
			name := cachev3.GetResourceName(r)
			names = append(names, name)
			vm[name] = s.hashes[typ][name]
			n := s.sizes[typ][name] + len(typ) + len(name) + 64 // Any and Resource wrapping
			total += n
			if n > largest {
				largest, largestName = n, name
			}
		}
		if Chunked(typ) {
			// The server sends route configurations and load assignments
			// a message's worth at a time (xds/server partial.go): only
			// one that is alone too large cannot be sent.
			if largest > ChunkBudget(s.maxMessage) {
				return nil, config.Errors{{Path: "server.grpc.maxSendMessageSize", Msg: fmt.Sprintf(
					"the %s %q encodes to %s, more than fits in the largest message the ADS server may send (%s, of which %s for resources); raise server.grpc.maxSendMessageSize, or spread its routes over more hosts (xds.routeSplit gives each virtual host its own route configuration)",
					strings.TrimSuffix(ShortType(typ), "s"), largestName, config.ByteSize(largest), config.ByteSize(s.maxMessage), config.ByteSize(ChunkBudget(s.maxMessage)))}}
			}
		} else if total > s.maxMessage {
			// A State-of-the-World response carries every resource of a
			// type; one that cannot be sent would leave nodes without
			// config, so it is refused here, before anything is pushed.
			return nil, config.Errors{{Path: "server.grpc.maxSendMessageSize", Msg: fmt.Sprintf(
				"the %s of this config encode to %s, more than the largest message the ADS server may send (%s); raise server.grpc.maxSendMessageSize (Envoy accepts large xDS messages; proxyless gRPC clients take 4MiB unless told otherwise)",
				ShortType(typ), config.ByteSize(total), config.ByteSize(s.maxMessage))}}
		}
		sort.Strings(names)
		h := sha256.New()
		for _, n := range names {
			fmt.Fprintf(h, "%s\x00%s\n", n, vm[n])
		}
		version := hex.EncodeToString(h.Sum(nil)[:8])
		real.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(version, slices.Clone(items))
		for i, r := range items {
			if shell, ok := s.served[r]; ok {
				items[i] = shell
			}
		}
		snap.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(version, items)
		snap.VersionMap[typ] = vm
	}
	// Types gatehouse does not serve still need a (empty) version map.
	for i := range types.UnknownType {
		typ, err := cachev3.GetResponseTypeURL(i)
		if err != nil {
			return nil, err
		}
		if _, ok := snap.VersionMap[typ]; !ok {
			snap.VersionMap[typ] = map[string]string{}
		}
	}
	// go-control-plane's own check too; it cannot see the route
	// configurations of API listeners, so gRPC snapshots rely on ours.
	if f == Envoy {
		if err := real.Consistent(); err != nil {
			return nil, fmt.Errorf("inconsistent snapshot: %w", err)
		}
	}
	return snap, nil
}

// GroupOf returns the group a node belongs to: by node id, else by node
// cluster, else the default group.
func (s *Set) GroupOf(node *corev3.Node) *Group {
	if g, ok := s.byID[node.GetId()]; ok {
		return s.groups[g]
	}
	if g, ok := s.byClust[node.GetCluster()]; ok {
		return s.groups[g]
	}
	return s.groups[s.defGroup]
}

// Group returns the named group, or nil.
func (s *Set) Group(name string) *Group { return s.groups[name] }

// Groups lists the group names, sorted.
func (s *Set) Groups() []string {
	out := make([]string, 0, len(s.groups))
	for n := range s.groups {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AnyOf returns the encoding of a resource this set serves (a route
// configuration or load assignment of one of its snapshots) as an Any that
// every response may share, read-only; it encodes r when the set does not
// hold it (a resource retained from an older set).
func (s *Set) AnyOf(r types.Resource) (*anypb.Any, error) {
	if a, ok := s.anys[r]; ok {
		return a, nil
	}
	return anypb.New(r)
}

// MaxMessage is the largest response the ADS server may send.
func (s *Set) MaxMessage() int { return s.maxMessage }

// ResourceVersion returns a resource's content version, or "".
func (s *Set) ResourceVersion(typeURL, name string) string { return s.hashes[typeURL][name] }
