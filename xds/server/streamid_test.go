package server_test

import (
	"context"
	"strings"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/gatehouse/gatehouse/xds/adsclient"
)

// TestCollidingStreamIDs: go-control-plane numbers State-of-the-World and
// Delta streams with two counters that both start at 1, so the first
// stream of each kind on a server share id 1. Closing the Delta one must
// leave the SotW one known: its ACKs attributed, its node connected, its
// pushes delivered.
func TestCollidingStreamIDs(t *testing.T) {
	h := start(t)
	h.srv.Push(buildSet(t, cfgYAML))

	// SotW stream 1.
	s, err := adsclient.NewSotW(h.ctx, h.conn, envoyNode("sotw-1", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Request(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	cds := recvType(t, s, resourcev3.ClusterType)
	if err := s.Ack(cds); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "sotw-1").Types["clusters"].InSync })

	// Delta stream 1, on its own context so that it can be closed alone.
	dctx, dcancel := context.WithCancel(h.ctx)
	defer dcancel()
	d, err := adsclient.NewDelta(dctx, h.conn, envoyNode("delta-1", "mesh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Subscribe(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	dr, err := d.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(dr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return nodeStatus(t, h, "delta-1").Types["clusters"].InSync })
	if st := nodeStatus(t, h, "delta-1"); st.Protocol != "delta" {
		t.Errorf("delta-1 protocol = %q; want delta", st.Protocol)
	}
	if st := nodeStatus(t, h, "sotw-1"); st.Protocol != "sotw" || st.Streams != 1 {
		t.Errorf("sotw-1 = %+v; want one sotw stream", st)
	}

	// Close the Delta stream: its node goes, the SotW node stays.
	dcancel()
	waitFor(t, func() bool { return !nodeStatus(t, h, "delta-1").Connected })
	if st := nodeStatus(t, h, "sotw-1"); !st.Connected || st.Streams != 1 {
		t.Fatalf("after the Delta stream closed, sotw-1 = %+v; want connected with one stream", st)
	}

	// The SotW stream still gets pushes, and its ACK is still attributed.
	changed := strings.Replace(cfgYAML, "10.0.0.1:80", "10.0.0.9:80", 1)
	changed = strings.Replace(changed, "{name: users,", "{name: people,", 1)
	changed = strings.Replace(changed, "cluster: users", "cluster: people", 1)
	h.srv.Push(buildSet(t, changed))
	cds2 := recvType(t, s, resourcev3.ClusterType)
	if cds2.GetVersionInfo() == cds.GetVersionInfo() {
		t.Fatalf("the push after the Delta stream closed sent the old cluster version %s", cds.GetVersionInfo())
	}
	if err := s.Ack(cds2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		c := nodeStatus(t, h, "sotw-1").Types["clusters"]
		return c.Acked == cds2.GetVersionInfo() && c.InSync
	})
	_ = s.CloseSend()
}
