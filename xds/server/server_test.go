package server_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/xds/adsclient"
	"github.com/gatehouse/gatehouse/xds/server"
	"github.com/gatehouse/gatehouse/xds/snapshot"
	"github.com/gatehouse/gatehouse/xds/translate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const cfgYAML = `apiVersion: gatehouse/v1
xds:
  nodeGroups:
    - {name: edge, nodeClusters: [edge], listeners: [public]}
listeners:
  - {name: public, address: 0.0.0.0:8080}
  - {name: internal, address: 0.0.0.0:8081}
clusters:
  - {name: orders, endpoints: [{address: 10.0.0.1:80}]}
  - {name: users, endpoints: [{address: 10.0.0.2:80}]}
routes:
  - {id: orders, match: {prefix: /orders}, cluster: orders}
  - {id: users, match: {prefix: /users}, cluster: users, listeners: [internal]}
`

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

func buildSet(t *testing.T, yaml string) *snapshot.Set {
	t.Helper()
	cfg, err := config.LoadBytes("gatehouse.yaml", []byte(yaml), config.LoadOptions{})
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
	return set
}

type harness struct {
	srv   *server.Server
	conn  *grpc.ClientConn
	audit *recorder
	reg   *prometheus.Registry
	ctx   context.Context
}

func start(t *testing.T) *harness {
	t.Helper()
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	srv, err := server.New(server.Options{Metrics: reg, Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	conn := testenv.GRPC(t, srv.Register)
	return &harness{srv: srv, conn: conn, audit: rec, reg: reg, ctx: ctx}
}

func envoyNode(id, cluster string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: cluster, UserAgentName: "envoy"}
}

func recvType(t *testing.T, s *adsclient.SotW, typ string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp, err := s.Recv()
	if err != nil {
		t.Fatalf("Recv() = %v", err)
	}
	if resp.GetTypeUrl() != typ {
		t.Fatalf("Recv() = a %s response; want %s", resp.GetTypeUrl(), typ)
	}
	return resp
}

func nodeStatus(t *testing.T, h *harness, id string) server.NodeStatus {
	t.Helper()
	rr := httptest.NewRecorder()
	h.srv.NodesHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/xds/nodes?node="+id, nil))
	var rep server.NodesReport
	if err := json.Unmarshal(rr.Body.Bytes(), &rep); err != nil {
		t.Fatalf("/xds/nodes: %v: %s", err, rr.Body)
	}
	if len(rep.Nodes) != 1 {
		t.Fatalf("/xds/nodes?node=%s = %d nodes; want 1: %s", id, len(rep.Nodes), rr.Body)
	}
	return rep.Nodes[0]
}

// TestSotWAckNack: a node gets its group's resources, ACKs show in
// /xds/nodes, a NACK is recorded with its config origin and audited, the
// rejected version is not re-sent, and the next config change is.
func TestSotWAckNack(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("e1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	cds := recvType(t, s, resourcev3.ClusterType)
	if got := len(cds.GetResources()); got != 1 {
		t.Errorf("edge node got %d clusters; want 1 (orders)", got)
	}
	if err := s.Ack(cds); err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	lds := recvType(t, s, resourcev3.ListenerType)
	// Reject the listeners, as Envoy would a bad listener.
	if err := s.Nack(lds, "", "Error adding/updating listener(s) listener/public: invalid thing"); err != nil {
		t.Fatal(err)
	}
	// The next LDS response could only be the rejected version again,
	// which must not come: the RDS request makes the server answer
	// something we can wait for, and an LDS response would arrive first.
	if err := s.Request(resourcev3.RouteType, "routes/public"); err != nil {
		t.Fatal(err)
	}
	rds := recvType(t, s, resourcev3.RouteType)
	if err := s.Ack(rds, "routes/public"); err != nil {
		t.Fatal(err)
	}

	waitFor(t, func() bool {
		st := nodeStatus(t, h, "e1")
		return st.Types["listeners"] != nil && st.Types["listeners"].Nack != nil && st.Types["clusters"].InSync && st.Types["routes"] != nil && st.Types["routes"].InSync
	})
	st := nodeStatus(t, h, "e1")
	if st.Group != "edge" || st.Protocol != "sotw" || !st.Connected {
		t.Errorf("node status = %+v; want group edge, sotw, connected", st)
	}
	nack := st.Types["listeners"].Nack
	if nack.Version != lds.GetVersionInfo() || !strings.Contains(nack.Detail, "invalid thing") {
		t.Errorf("nack = %+v; want version %s and the detail", nack, lds.GetVersionInfo())
	}
	if len(nack.Origins) == 0 || nack.Origins[0].Path != "listeners[0]" || nack.Origins[0].Pos != "gatehouse.yaml:6" {
		t.Errorf("nack origins = %+v; want listeners[0] at gatehouse.yaml:6", nack.Origins)
	}
	events := h.audit.all()
	if len(events) != 1 || events[0].Kind != audit.KindXDSNack || events[0].Node != "e1" || events[0].Version != lds.GetVersionInfo() ||
		!strings.Contains(events[0].Detail, `listener "public"`) {
		t.Errorf("audit = %+v; want one xds.nack for e1 naming listener public", events)
	}
	if got := testutil.ToFloat64(mustCounter(t, h, "gatehouse_xds_nacks_total", "listeners")); got != 1 {
		t.Errorf("gatehouse_xds_nacks_total{type=listeners} = %v; want 1", got)
	}

	// A config change: the node now gets a new listener version.
	next := strings.Replace(cfgYAML, "address: 0.0.0.0:8080", "address: 0.0.0.0:8090", 1)
	h.srv.Push(buildSet(t, next))
	lds2 := recvType(t, s, resourcev3.ListenerType)
	if lds2.GetVersionInfo() == lds.GetVersionInfo() {
		t.Fatalf("after a NACK the server re-sent the rejected version %s", lds.GetVersionInfo())
	}
	if err := s.Ack(lds2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		l := nodeStatus(t, h, "e1").Types["listeners"]
		return l.InSync && l.Nack == nil
	})
	_ = s.CloseSend()
}

func mustCounter(t *testing.T, h *harness, name, typ string) prometheus.Collector {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" && l.GetValue() == typ {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{type=%q}", name, typ)
	return nil
}

// waitFor polls cond (bounded), for state that streams update
// asynchronously.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeltaSendsOnlyChanges: after a route change a Delta client gets the
// one changed route configuration, nothing else; a no-op push sends
// nothing at all.
func TestDeltaSendsOnlyChanges(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	d, err := adsclient.NewDelta(h.ctx, h.conn, envoyNode("d1", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(resourcev3.RouteType, "routes/public", "routes/internal"); err != nil {
		t.Fatal(err)
	}
	first, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"routes/internal", "routes/public"}, sortedNames(first)); diff != "" {
		t.Errorf("first delta response (-want +got):\n%s", diff)
	}
	if err := d.Ack(first); err != nil {
		t.Fatal(err)
	}
	h.srv.Push(buildSet(t, cfgYAML)) // no-op
	changed := strings.Replace(cfgYAML, "prefix: /users", "prefix: /people", 1)
	h.srv.Push(buildSet(t, changed))
	next, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"routes/internal"}, sortedNames(next)); diff != "" {
		t.Errorf("delta after one route change (-want +got):\n%s", diff)
	}
	if len(next.GetRemovedResources()) != 0 {
		t.Errorf("removed = %v; want none", next.GetRemovedResources())
	}
	// NACK it: Delta must not send it again; the next push must arrive.
	if err := d.Nack(next, "bad route"); err != nil {
		t.Fatal(err)
	}
	h.srv.Push(buildSet(t, changed+"  - {id: extra, match: {prefix: /x}, cluster: orders, listeners: [public]}\n"))
	third, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"routes/public"}, sortedNames(third)); diff != "" {
		t.Errorf("delta after the NACK and a change (-want +got):\n%s", diff)
	}
	waitFor(t, func() bool {
		r := nodeStatus(t, h, "d1").Types["routes"]
		return r != nil && r.Nack != nil && r.Nack.Version == next.GetSystemVersionInfo()
	})
	_ = d.CloseSend()
}

func sortedNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	n := adsclient.Names(r)
	slices.Sort(n)
	return n
}

// TestRegroup: a reload that moves a node to another group sends it the
// other group's resources at once.
func TestRegroup(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("n1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	first := recvType(t, s, resourcev3.ListenerType)
	if got := len(first.GetResources()); got != 1 {
		t.Fatalf("edge listeners = %d; want 1", got)
	}
	h.srv.Push(buildSet(t, strings.Replace(cfgYAML, "nodeClusters: [edge]", "nodeClusters: [other]", 1)))
	if st := nodeStatus(t, h, "n1"); st.Group != "default" {
		t.Errorf("group after regroup = %q; want default", st.Group)
	}
	// The ACK of the first response opens the next watch, which the
	// default group's snapshot answers at once.
	if err := s.Ack(first); err != nil {
		t.Fatal(err)
	}
	if got := len(recvType(t, s, resourcev3.ListenerType).GetResources()); got != 2 {
		t.Errorf("listeners after regroup = %d; want the default group's 2", got)
	}
	_ = s.CloseSend()
}

// TestNodeIDRequired: a node without an id is refused with a clear error.
func TestNodeIDRequired(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	s, err := adsclient.NewSotW(h.ctx, h.conn, &corev3.Node{Cluster: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "node.id is required") {
		t.Errorf("Recv() = %v; want InvalidArgument naming node.id", err)
	}
}

// TestHalfClosedClientGetsAnswers: a client that sends its request and
// closes its side (grpcurl does) still gets the answer, and the stream
// stays until the client leaves.
func TestHalfClosedClientGetsAnswers(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(h.conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: envoyNode("grpcurl", "edge"), TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv() after CloseSend = %v; want the clusters", err)
	}
	if resp.GetTypeUrl() != resourcev3.ClusterType || len(resp.GetResources()) == 0 {
		t.Errorf("Recv() = %v; want clusters", resp)
	}
}

// TestPushCountsContentChanges: gatehouse_xds_snapshot_pushes_total
// counts a node only when its group's content changed, not on every
// config change.
func TestPushCountsContentChanges(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("p1", "edge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	recvType(t, s, resourcev3.ClusterType)
	pushes := func() float64 {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "gatehouse_xds_snapshot_pushes_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no gatehouse_xds_snapshot_pushes_total")
		return 0
	}
	if got := pushes(); got != 1 {
		t.Fatalf("pushes after sign-in = %v; want 1", got)
	}
	// Only the internal listener's route changes; the edge group (public
	// listener) gets the same content.
	h.srv.Push(buildSet(t, strings.Replace(cfgYAML, "prefix: /users", "prefix: /people", 1)))
	if got := pushes(); got != 1 {
		t.Errorf("pushes after a change outside the node's group = %v; want 1", got)
	}
	h.srv.Push(buildSet(t, strings.Replace(cfgYAML, "prefix: /orders", "prefix: /orders2", 1)))
	if got := pushes(); got != 2 {
		t.Errorf("pushes after a change of the node's routes = %v; want 2", got)
	}
	_ = s.CloseSend()
}
