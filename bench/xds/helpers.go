package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/gatehouse/gatehouse/xds"
	"github.com/gatehouse/gatehouse/xds/adsclient"
)

func edsNames(rs []*anypb.Any) []string {
	var out []string
	for _, a := range rs {
		c := &clusterv3.Cluster{}
		if a.UnmarshalTo(c) == nil && c.GetType() == clusterv3.Cluster_EDS {
			out = append(out, c.GetName())
		}
	}
	sort.Strings(out)
	return out
}

// rdsNames lists the route configurations the listeners name over RDS,
// and whether one uses scoped routes over SRDS (routes split by host).
func rdsNames(rs []*anypb.Any) ([]string, bool) {
	var out []string
	scoped := false
	for _, a := range rs {
		l := &listenerv3.Listener{}
		if a.UnmarshalTo(l) != nil {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				if hcm.GetRds() != nil {
					out = append(out, hcm.GetRds().GetRouteConfigName())
				}
				if hcm.GetScopedRoutes().GetScopedRds() != nil {
					scoped = true
				}
			}
		}
	}
	sort.Strings(out)
	return out, scoped
}

// scopeRoutes lists the route configurations scoped routes name.
func scopeRoutes(rs []*anypb.Any) []string {
	var out []string
	for _, a := range rs {
		s := &routev3.ScopedRouteConfiguration{}
		if a.UnmarshalTo(s) == nil {
			out = append(out, s.GetRouteConfigurationName())
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func deltaAnys(r *discoveryv3.DeltaDiscoveryResponse) []*anypb.Any {
	out := make([]*anypb.Any, 0, len(r.GetResources()))
	for _, res := range r.GetResources() {
		out = append(out, res.GetResource())
	}
	return out
}

func protoSize(m proto.Message) int { return proto.Size(m) }

// nullADS answers each stream's first request with nothing, then sends
// every stream the same prepared route table when triggered: what it
// costs gRPC alone to fan one route change out to every client.
type nullADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	resp    *discoveryv3.DiscoveryResponse
	mu      sync.Mutex
	streams []chan struct{}
	joined  chan struct{}
}

func (n *nullADS) StreamAggregatedResources(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	trigger := make(chan struct{}, 1)
	n.mu.Lock()
	n.streams = append(n.streams, trigger)
	n.mu.Unlock()
	n.joined <- struct{}{}
	go func() { // drain ACKs
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-s.Context().Done():
			return nil
		case <-trigger:
			if err := s.Send(n.resp); err != nil {
				return err
			}
		}
	}
}

// ceiling is the no-op server with its clients, kept up for the whole
// run so that each gatehouse round can be compared with a null round
// measured right before it (the machine is shared and noisy).
type ceiling struct {
	n      *nullADS
	got    chan struct{}
	stop   func()
	rounds []time.Duration
}

// newCeiling starts the no-op server with the route configuration that
// holds route r0 (what one route change sends, split or not) and connects
// the clients.
func newCeiling(ctx context.Context, comp *xds.Server) (*ceiling, error) {
	set := comp.ADS().Current()
	var rs []*anypb.Any
	for _, rc := range set.Resources.Routes {
		if !holdsRoute(rc, "r0") {
			continue
		}
		a, err := anypb.New(rc)
		if err != nil {
			return nil, err
		}
		rs = append(rs, a)
	}
	n := &nullADS{joined: make(chan struct{}, *clients),
		resp: &discoveryv3.DiscoveryResponse{TypeUrl: resourcev3.RouteType, VersionInfo: "1", Resources: rs, Nonce: "1"}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(grpc.MaxSendMsgSize(maxMsg))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, n)
	go func() { _ = g.Serve(lis) }()

	c := &ceiling{n: n, got: make(chan struct{}, *clients)}
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	var conns []*grpc.ClientConn
	c.stop = func() {
		cancel()
		for _, conn := range conns {
			_ = conn.Close()
		}
		g.Stop()
		wg.Wait()
	}
	for i := range *clients {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)))
		if err != nil {
			c.stop()
			return nil, err
		}
		conns = append(conns, conn)
		s, err := adsclient.NewSotW(cctx, conn, &corev3.Node{Id: fmt.Sprint("null-", i)})
		if err != nil {
			c.stop()
			return nil, err
		}
		if err := s.Request(resourcev3.RouteType, "routes/public"); err != nil {
			c.stop()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				resp, err := s.Recv()
				if err != nil {
					return
				}
				_ = s.Ack(resp, "routes/public")
				c.got <- struct{}{}
			}
		}()
	}
	for range *clients {
		select {
		case <-n.joined:
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
	return c, nil
}

// round fans the route table out once and returns how long until every
// client had it.
func (c *ceiling) round(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	c.n.mu.Lock()
	for _, tr := range c.n.streams {
		tr <- struct{}{}
	}
	c.n.mu.Unlock()
	for range *clients {
		select {
		case <-c.got:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	d := time.Since(t0)
	c.rounds = append(c.rounds, d)
	return d, nil
}

// median is the middle duration of ds (the lower of the two middle ones).
func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", msf(d)) }

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// perClient renders resources received per client by type.
func perClient(m map[string]int64, n int) string {
	var parts []string
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		short := map[string]string{resourcev3.ClusterType: "clusters", resourcev3.EndpointType: "endpoints", resourcev3.ListenerType: "listeners", resourcev3.RouteType: "routes"}[typ]
		parts = append(parts, fmt.Sprintf("%s=%g", short, float64(m[typ])/float64(n)))
	}
	return strings.Join(parts, " ")
}

func compact(s string) string { return strings.ReplaceAll(s, " ", ",") }

func holdsRoute(rc *routev3.RouteConfiguration, id string) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == id {
				return true
			}
		}
	}
	return false
}

func largest(comp *xds.Server) string {
	n := 0
	for _, rc := range comp.ADS().Current().Resources.Routes {
		n = max(n, protoSize(rc))
	}
	return mb(n)
}

func mb(n int) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func kb(n int) string { return fmt.Sprintf("%.0f KB", float64(n)/1e3) }

// heapNow is the live heap after collections.
func heapNow() uint64 {
	// Twice: pooled buffers (gRPC's, sync.Pool) survive one collection.
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// sampleHeap samples the heap every 20ms until the returned function is
// called, which returns the highest sample.
func sampleHeap() func() uint64 {
	var mu sync.Mutex
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// memProfileRate samples one allocation per 64 KiB for heapSplit (the
// default, 512 KiB, leaves per-client figures noisy).
const memProfileRate = 64 << 10

// clientFrames name the functions of the in-process clients: an
// allocation with one on its stack is the clients', any other the
// server's (the control plane's snapshots, streams and gRPC server).
var clientFrames = []string{"main.sotwClient", "main.deltaClient", "main.connect", "main.newCeiling", "xds/adsclient.", "grpc.(*ClientConn)", "grpc.newClientStream", "grpc.(*clientStream)", "grpc.(*csAttempt)", "transport.(*http2Client)", "transport.NewHTTP2Client", "grpc.(*addrConn)", "grpc.NewClient", "grpc.(*ccBalancerWrapper)", "grpc.(*ccResolverWrapper)", "pickfirst", "main.(*pool)"}

// heapSplit estimates the live heap (as of the last collection: call
// heapNow first) held by the server and by the in-process clients, from
// the heap profile: sampled allocations scaled as pprof scales them.
func heapSplit() (server, clients int64) {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, false)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	for _, r := range recs {
		objs, bytes := r.InUseObjects(), r.InUseBytes()
		if objs == 0 || bytes == 0 {
			continue
		}
		avg := float64(bytes) / float64(objs)
		est := int64(float64(bytes) / (1 - math.Exp(-avg/float64(memProfileRate))))
		if isClient(r.Stack()) {
			clients += est
		} else {
			server += est
		}
	}
	return server, clients
}

func isClient(stack []uintptr) bool {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		for _, c := range clientFrames {
			if strings.Contains(f.Function, c) {
				return true
			}
		}
		if !more {
			return false
		}
	}
}
