// Command xds is the xDS load scenario (see scripts/bench/xds.sh): it
// serves a large config (5,000 routes, 1,000 clusters by default) from
// gatehouse's xds component on loopback, connects many ADS clients that
// behave like Envoy (CDS and LDS, then EDS, SRDS when routes are split by
// host, and RDS; ACK every response; resume with what they hold after a
// reconnect), and per mode (SotW, Delta, mixed) measures the initial sync,
// a route change and an endpoint change reaching every client, and a
// reconnect of every client at once. A no-op ADS server fanning the changed
// route configuration out to as many clients, measured in interleaved
// rounds, is the ceiling: gRPC alone on this machine in the same run.
//
// It prints one RESULT line per mode for scripts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gatehouse/gatehouse/internal/component"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/grpcserver"
	"github.com/gatehouse/gatehouse/xds"
	"github.com/gatehouse/gatehouse/xds/adsclient"
	"github.com/gatehouse/gatehouse/xds/xdstest"
)

func main() {
	runtime.MemProfileRate = memProfileRate
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/xds:", err)
		os.Exit(1)
	}
}

var (
	clients   = flag.Int("clients", 100, "ADS clients (each its own connection)")
	routes    = flag.Int("routes", 5000, "routes in the config")
	clusters  = flag.Int("clusters", 1000, "clusters in the config")
	rounds    = flag.Int("rounds", 5, "route changes per mode")
	timeout   = flag.Duration("timeout", 120*time.Second, "give up after this long")
	cpuProf   = flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	grpcCodec = flag.Bool("grpccodec", false, "serve with gRPC's own proto codec (its default buffer pool jumps from 32 KiB to 1 MiB) instead of gatehouse's (a pool tier at every power of two): to compare the two")
	heapProf  = flag.String("heapprofile", "", "write a heap profile here after the first mode's initial sync")
	cpuPhase  = flag.String("cpuphase", "", "with -cpuprofile, profile only this phase of the first mode: sync, route, endpoint, reconnect, after-reconnect (the change after it)")
	modes     = flag.String("modes", "sotw,delta,mixed", "sotw, delta, mixed (every other client Delta), comma-separated; both means sotw,delta")
)

const maxMsg = 64 << 20

func run() error {
	flag.Parse()
	if *rounds < 1 || *clients < 1 || *routes < 1 || *clusters < 1 {
		fmt.Fprintln(os.Stderr, "xds bench: -rounds, -clients, -routes and -clusters must be at least 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var prof *phaseProfile
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		defer f.Close()
		prof = &phaseProfile{f: f, phase: *cpuPhase}
		if err := prof.start(""); err != nil {
			return err
		}
		defer prof.stop("")
	}

	cfgAt := func(routeVariant, clusterVariant int) (*config.Config, error) {
		y := xdstest.YAML(*routes, *clusters, 50, "127.0.0.1:0", routeVariant)
		if clusterVariant > 0 {
			y = xdstest.WithClusterVariant(y, clusterVariant)
		}
		return config.LoadBytes("bench.yaml", []byte(y), config.LoadOptions{})
	}
	cfg, err := cfgAt(0, 0)
	if err != nil {
		return err
	}
	comp, err := xds.New(cfg, component.Deps{Logger: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	defer func() { _ = comp.Close(context.Background()) }()
	commit, err := comp.Prepare(cfg)
	if err != nil {
		return err
	}
	commit()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The server's message limit is the config's (4MiB by default), as in
	// production: the route table is sent a message's worth at a time.
	limit := int(cfg.Server.GRPC.MaxSendMessageSize)
	opts := []grpc.ServerOption{grpc.MaxSendMsgSize(limit), grpc.MaxRecvMsgSize(maxMsg)}
	if !*grpcCodec {
		opts = append(opts, grpc.ForceServerCodecV2(grpcserver.Codec()))
	}
	g := grpc.NewServer(opts...)
	comp.Register(g)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	fmt.Printf("xds load: %d clients, %d routes, %d clusters, %d rounds; route table %s in %d route configurations (largest %s), message limit %s\n",
		*clients, *routes, *clusters, *rounds, size(comp), len(comp.ADS().Current().Resources.Routes), largest(comp), mb(limit))

	ceil, err := newCeiling(ctx, comp)
	if err != nil {
		return fmt.Errorf("null server: %w", err)
	}
	defer ceil.stop()

	// variant numbers the route changes; cv is the endpoints' variant,
	// kept across modes so that a mode's first route change is that
	// alone (not also an undo of the previous mode's endpoint change).
	variant, cv := 0, 0
	for _, mode := range splitModes(*modes) {
		// The previous mode's streams end asynchronously on the server:
		// measure from when they are gone.
		if err := drained(ctx, comp); err != nil {
			return err
		}
		heap0 := heapNow()
		srv0, cli0 := heapSplit()
		peak := sampleHeap()
		t0 := time.Now()
		if err := prof.start("sync"); err != nil {
			return err
		}
		pool, err := connect(ctx, lis.Addr().String(), mode, *clients, nil)
		prof.stop("sync")
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		syncTime, syncPeak := time.Since(t0), grew(peak(), heap0)
		// Signed: the heap may shrink (garbage of the previous mode).
		heapPer := grew(heapNow(), heap0) / int64(*clients)
		srv1, cli1 := heapSplit()
		if *heapProf != "" {
			if err := writeHeap(*heapProf); err != nil {
				return err
			}
			*heapProf = ""
		}
		srvPer, cliPer := (srv1-srv0)/int64(*clients), (cli1-cli0)/int64(*clients)

		var prep, seen, null []time.Duration
		var routeRes map[string]int64
		for range *rounds {
			// Both rounds start from a collected heap (the clients'
			// garbage would otherwise land its collection on either).
			runtime.GC()
			nd, err := ceil.round(ctx)
			if err != nil {
				pool.close()
				return fmt.Errorf("null round: %w", err)
			}
			null = append(null, nd)
			variant++
			next, err := cfgAt(variant, cv)
			if err != nil {
				return err
			}
			if err := prof.start("route"); err != nil {
				return err
			}
			p, s, counts, err := change(ctx, comp, pool, next, resourcev3.RouteType)
			prof.stop("route")
			if err != nil {
				pool.close()
				return fmt.Errorf("%s round %d: %w", mode, variant, err)
			}
			prep, seen, routeRes = append(prep, p), append(seen, s), counts
		}
		cv = variant + 1
		next, err := cfgAt(variant, cv)
		if err != nil {
			return err
		}
		if err := prof.start("endpoint"); err != nil {
			return err
		}
		_, cs, clusterRes, err := change(ctx, comp, pool, next, resourcev3.EndpointType)
		prof.stop("endpoint")
		if err != nil {
			pool.close()
			return fmt.Errorf("%s cluster change: %w", mode, err)
		}

		// Every client reconnects at once, naming what it holds (a control
		// plane restart behind a load balancer, or a move to another
		// replica): nothing should be sent, and the next change must
		// reach all of them.
		states := pool.states
		pool.close()
		heapR := heapNow()
		peakR := sampleHeap()
		if err := prof.start("reconnect"); err != nil {
			return err
		}
		t1 := time.Now()
		pool, err = connect(ctx, lis.Addr().String(), mode, *clients, states)
		if err != nil {
			return fmt.Errorf("%s reconnect: %w", mode, err)
		}
		resync := time.Since(t1)
		// The clients have sent their requests; the server is done with
		// the reconnect once every node shows in sync in /xds/nodes.
		if err := inSync(ctx, comp, *clients); err != nil {
			pool.close()
			return fmt.Errorf("%s reconnect: %w", mode, err)
		}
		caughtUp := time.Since(t1)
		// Let whatever the reconnect caused arrive (there should be none).
		time.Sleep(500 * time.Millisecond)
		afterRes := pool.counts()
		variant++
		next, err = cfgAt(variant, cv)
		if err != nil {
			return err
		}
		prof.stop("reconnect")
		if err := prof.start("after-reconnect"); err != nil {
			return err
		}
		_, rs, _, err := change(ctx, comp, pool, next, resourcev3.RouteType)
		prof.stop("after-reconnect")
		if err != nil {
			pool.close()
			return fmt.Errorf("%s change after reconnect: %w", mode, err)
		}
		// The server's state for the same nodes after a reconnect and a
		// change: bounded per node, not grown by the churn.
		heapNow()
		srv2, _ := heapSplit()
		srvPerR := (srv2 - srv0) / int64(*clients)
		pool.close()
		resyncPeak := grew(peakR(), heapR)

		p50, maxSeen := median(seen), slices.Max(seen)
		ceiling := median(null)
		fmt.Printf("%s: initial sync of %d clients %s, heap peak +%s, heap after %s per client (server and in-process clients), of which the server's %s and the clients' %s (heap profile)\n",
			mode, *clients, ms(syncTime), mb(int(syncPeak)), kb(int(heapPer)), kb(int(srvPer)), kb(int(cliPer)))
		fmt.Printf("%s: ceiling (no-op ADS server fanning the changed route configuration out to %d streams, interleaved): p50 %s\n", mode, *clients, ms(ceiling))
		fmt.Printf("%s: one route changed → all %d clients have it: p50 %s, max %s (build %s p50); ratio to ceiling p50 %.2f max %.2f; resources sent per client: %s\n",
			mode, *clients, ms(p50), ms(maxSeen), ms(median(prep)), float64(p50)/float64(ceiling), float64(maxSeen)/float64(ceiling), perClient(routeRes, *clients))
		fmt.Printf("%s: one cluster's endpoints changed → all have it in %s (ratio %.2f); resources sent per client: %s\n",
			mode, ms(cs), float64(cs)/float64(ceiling), perClient(clusterRes, *clients))
		fmt.Printf("%s: all %d reconnect at once naming their versions: all back in %s (the server done with it in %s), resources sent per client for it: %s; the next route change reaches all in %s; heap peak +%s; server heap after it %s per client\n",
			mode, *clients, ms(resync), ms(caughtUp), perClient(afterRes, *clients), ms(rs), mb(int(resyncPeak)), kb(int(srvPerR)))
		fmt.Printf("RESULT mode=%s clients=%d routes=%d clusters=%d route_change_p50_ms=%.1f route_change_max_ms=%.1f build_p50_ms=%.1f ceiling_ms=%.1f ratio=%.2f max_ratio=%.2f endpoint_change_ms=%.1f sync_ms=%.1f sync_heap_peak_mb=%.1f heap_per_client_kb=%.1f server_heap_per_client_kb=%.1f server_heap_per_client_after_reconnect_kb=%.1f resync_ms=%.1f resync_server_ms=%.1f route_change_resources_per_client=%s cluster_change_resources_per_client=%s after_reconnect_resources_per_client=%s\n",
			mode, *clients, *routes, *clusters, msf(p50), msf(maxSeen), msf(median(prep)), msf(ceiling), float64(p50)/float64(ceiling), float64(maxSeen)/float64(ceiling),
			msf(cs), msf(syncTime), float64(syncPeak)/1e6, float64(heapPer)/1e3, float64(srvPer)/1e3, float64(srvPerR)/1e3, msf(resync), msf(caughtUp),
			compact(perClient(routeRes, *clients)), compact(perClient(clusterRes, *clients)), compact(perClient(afterRes, *clients)))
	}
	return nil
}

func splitModes(s string) []string {
	var out []string
	for _, m := range []string{"sotw", "delta", "mixed"} {
		if (s == "both" && m != "mixed") || slices.Contains(splitComma(s), m) {
			out = append(out, m)
		}
	}
	return out
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func size(comp *xds.Server) string {
	set := comp.ADS().Current()
	n := 0
	for _, rc := range set.Resources.Routes {
		n += protoSize(rc)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// change commits cfg and waits until every client has a new version of
// typeURL; it returns the build time, the time from commit to the last
// client, and the resources clients received by type meanwhile.
func change(ctx context.Context, comp *xds.Server, pool *pool, cfg *config.Config, typeURL string) (time.Duration, time.Duration, map[string]int64, error) {
	runtime.GC() // the build too starts from a collected heap
	t0 := time.Now()
	commit, err := comp.Prepare(cfg)
	if err != nil {
		return 0, 0, nil, err
	}
	built := time.Since(t0)
	pool.reset(typeURL)
	runtime.GC() // as before a ceiling round
	t1 := time.Now()
	commit()
	if err := pool.wait(ctx); err != nil {
		return 0, 0, nil, err
	}
	seen := time.Since(t1)
	// Let trailing responses (there should be none) be counted.
	time.Sleep(100 * time.Millisecond)
	return built, seen, pool.counts(), nil
}

// pool is a set of clients and what they received since the last reset.
type pool struct {
	mode     string
	states   []*clientState
	mu       sync.Mutex
	typeURL  string
	pending  int
	done     chan struct{}
	received map[string]int64
	closers  []func()
	errs     chan error
}

func (p *pool) reset(typeURL string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.typeURL = typeURL
	p.pending = *clients
	p.done = make(chan struct{})
	p.received = map[string]int64{}
}

// got records a response of typeURL with n resources; fresh says it
// carried a new version of the watched type.
func (p *pool) got(typeURL string, n int, fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.received == nil {
		return
	}
	p.received[typeURL] += int64(n)
	if fresh && typeURL == p.typeURL && p.pending > 0 {
		p.pending--
		if p.pending == 0 {
			close(p.done)
		}
	}
}

func (p *pool) wait(ctx context.Context) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return nil
	case err := <-p.errs:
		return err
	case <-ctx.Done():
		return fmt.Errorf("not every client got the change: %w", ctx.Err())
	}
}

func (p *pool) counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int64{}
	for k, v := range p.received {
		out[k] = v
	}
	return out
}

func (p *pool) close() {
	for _, c := range p.closers {
		c()
	}
}

// connect starts n clients of a mode (sotw, delta, or mixed: every other
// one) and waits until each has its first route table, or, when states
// holds what each had (a reconnect), until each has sent its requests.
func connect(ctx context.Context, addr, mode string, n int, states []*clientState) (*pool, error) {
	p := &pool{errs: make(chan error, n), mode: mode}
	p.reset(resourcev3.RouteType)
	p.received = nil // the initial sync is not counted
	if states != nil {
		p.received = map[string]int64{} // what a reconnect is sent is
	}
	if states == nil {
		states = make([]*clientState, n)
		for i := range states {
			states[i] = newClientState()
		}
	}
	p.states = states
	ready := make(chan struct{}, n)
	for i := range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)))
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		p.closers = append(p.closers, func() { cancel(); _ = conn.Close(); wg.Wait() })
		delta := mode == "delta" || (mode == "mixed" && i%2 == 1)
		node := &corev3.Node{Id: fmt.Sprintf("bench-%s-%d", mode, i), Cluster: "bench", UserAgentName: "envoy"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if delta {
				err = deltaClient(cctx, conn, node, p, ready, states[i])
			} else {
				err = sotwClient(cctx, conn, node, p, ready, states[i])
			}
			if err != nil && cctx.Err() == nil {
				p.errs <- err
			}
		}()
	}
	for range n {
		select {
		case <-ready:
		case err := <-p.errs:
			return nil, err
		case <-ctx.Done():
			return nil, errors.New("clients did not sync in time")
		}
	}
	return p, nil
}

// clientState is what one client holds, to resume with after a
// reconnect: per type, the last complete version (SotW) and the version
// of each resource (Delta).
type clientState struct {
	versions map[string]string
	have     map[string]map[string]string
	names    map[string][]string
}

func newClientState() *clientState {
	return &clientState{versions: map[string]string{}, have: map[string]map[string]string{}, names: map[string][]string{}}
}

// complete reports whether a version is the last part of a change (the
// server sends a large change in several responses, all but the last
// versioned <v>/partial).
func complete(version string) bool { return !strings.HasSuffix(version, "/partial") }

// sotwClient follows Envoy's State-of-the-World sequence on one ADS
// stream: CDS and LDS (wildcard), then EDS for the clusters, SRDS when
// the listener's routes are split by host, and RDS for the names the
// listener or the scopes reference; it ACKs each response with the names
// it holds. With st from an earlier stream, it resumes: each request
// names the version it holds, as Envoy does when it reconnects.
func sotwClient(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, p *pool, ready chan<- struct{}, st *clientState) error {
	s, err := adsclient.NewSotW(ctx, conn, node)
	if err != nil {
		return err
	}
	resumed := len(st.versions) > 0
	request := func(typ string, names ...string) error {
		st.names[typ] = names
		if resumed {
			return s.Resume(typ, st.versions[typ], names...)
		}
		return s.Request(typ, names...)
	}
	if resumed {
		for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.ScopedRouteType, resourcev3.RouteType} {
			if _, ok := st.versions[typ]; ok {
				if err := request(typ, st.names[typ]...); err != nil {
					return err
				}
			}
		}
		ready <- struct{}{}
	} else {
		if err := request(resourcev3.ClusterType); err != nil {
			return err
		}
		if err := request(resourcev3.ListenerType); err != nil {
			return err
		}
	}
	synced := resumed
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		fresh := st.versions[typ] != resp.GetVersionInfo() && complete(resp.GetVersionInfo())
		if complete(resp.GetVersionInfo()) {
			st.versions[typ] = resp.GetVersionInfo()
		}
		var next string
		var more []string
		switch typ {
		case resourcev3.ClusterType:
			next, more = resourcev3.EndpointType, edsNames(resp.GetResources())
		case resourcev3.ListenerType:
			var scoped bool
			next = resourcev3.RouteType
			if more, scoped = rdsNames(resp.GetResources()); scoped {
				next, more = resourcev3.ScopedRouteType, nil
				if _, ok := st.names[next]; ok {
					next = ""
				}
			}
		case resourcev3.ScopedRouteType:
			next, more = resourcev3.RouteType, scopeRoutes(resp.GetResources())
		}
		if err := s.Ack(resp, st.names[typ]...); err != nil {
			return err
		}
		if next != "" {
			if _, ok := st.names[next]; !ok || !slices.Equal(more, st.names[next]) {
				if err := request(next, more...); err != nil {
					return err
				}
			}
		}
		p.got(typ, len(resp.GetResources()), fresh)
		if !synced && typ == resourcev3.RouteType && complete(resp.GetVersionInfo()) {
			synced = true
			ready <- struct{}{}
		}
	}
}

// deltaClient follows the same sequence over Delta xDS; resuming, it
// names the versions of the resources it holds.
func deltaClient(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, p *pool, ready chan<- struct{}, st *clientState) error {
	d, err := adsclient.NewDelta(ctx, conn, node)
	if err != nil {
		return err
	}
	resumed := len(st.have) > 0
	subscribe := func(typ string, names ...string) error {
		if resumed {
			return d.Resume(typ, st.have[typ], names...)
		}
		return d.Subscribe(typ, names...)
	}
	subscribed := map[string]bool{}
	if resumed {
		for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.ScopedRouteType, resourcev3.RouteType} {
			have, ok := st.have[typ]
			if !ok {
				continue
			}
			var names []string
			if typ == resourcev3.EndpointType || typ == resourcev3.RouteType {
				for n := range have {
					names = append(names, n)
					subscribed[typ+"\x00"+n] = true
				}
				sort.Strings(names)
			}
			if err := subscribe(typ, names...); err != nil {
				return err
			}
		}
		ready <- struct{}{}
	} else {
		if err := subscribe(resourcev3.ClusterType); err != nil {
			return err
		}
		if err := subscribe(resourcev3.ListenerType); err != nil {
			return err
		}
	}
	synced := resumed
	for {
		resp, err := d.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		if st.have[typ] == nil {
			st.have[typ] = map[string]string{}
		}
		for _, r := range resp.GetResources() {
			st.have[typ][r.GetName()] = r.GetVersion()
		}
		for _, n := range resp.GetRemovedResources() {
			delete(st.have[typ], n)
		}
		if err := d.Ack(resp); err != nil {
			return err
		}
		var next string
		var more []string
		switch typ {
		case resourcev3.ClusterType:
			next, more = resourcev3.EndpointType, edsNames(deltaAnys(resp))
		case resourcev3.ListenerType:
			var scoped bool
			next = resourcev3.RouteType
			if more, scoped = rdsNames(deltaAnys(resp)); scoped && !subscribed[resourcev3.ScopedRouteType] {
				subscribed[resourcev3.ScopedRouteType] = true
				if err := d.Subscribe(resourcev3.ScopedRouteType); err != nil {
					return err
				}
			}
		case resourcev3.ScopedRouteType:
			next, more = resourcev3.RouteType, scopeRoutes(deltaAnys(resp))
		}
		var fresh []string
		for _, n := range more {
			if !subscribed[next+"\x00"+n] {
				subscribed[next+"\x00"+n] = true
				fresh = append(fresh, n)
			}
		}
		if len(fresh) > 0 {
			if err := d.Subscribe(next, fresh...); err != nil {
				return err
			}
		}
		done := complete(resp.GetSystemVersionInfo())
		p.got(typ, len(resp.GetResources()), len(resp.GetResources()) > 0 && done)
		if !synced && typ == resourcev3.RouteType && done {
			synced = true
			ready <- struct{}{}
		}
	}
}

// phaseProfile is the CPU profile of the whole run (phase "") or of the
// first time one phase runs.
type phaseProfile struct {
	f       *os.File
	phase   string
	running bool
	done    bool
}

func (p *phaseProfile) start(phase string) error {
	if p == nil || p.done || p.running || phase != p.phase {
		return nil
	}
	p.running = true
	return pprof.StartCPUProfile(p.f)
}

func (p *phaseProfile) stop(phase string) {
	if p == nil || !p.running || phase != p.phase {
		return
	}
	pprof.StopCPUProfile()
	p.running, p.done = false, true
}

// grew is how much the heap grew from before to now, negative when it
// shrank.
func grew(now, before uint64) int64 { return int64(now) - int64(before) }

// drained waits until the server has no connected node.
func drained(ctx context.Context, comp *xds.Server) error {
	for {
		n := 0
		for _, ns := range comp.ADS().Nodes().Nodes {
			if ns.Connected {
				n++
			}
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d nodes still connected after the previous mode: %w", n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// inSync waits until n nodes are connected and each is in sync on every
// type it holds.
func inSync(ctx context.Context, comp *xds.Server, n int) error {
	for {
		ok := 0
		for _, ns := range comp.ADS().Nodes().Nodes {
			if !ns.Connected || len(ns.Types) == 0 {
				continue
			}
			all := true
			for _, ts := range ns.Types {
				all = all && ts.InSync
			}
			if all {
				ok++
			}
		}
		if ok >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d nodes in sync: %w", ok, n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
