package envoy_test

import (
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/test/harness"
)

// testXDSAcked: Envoy ACKed every resource type gatehouse sent, and its
// config_dump holds the versions gatehouse's /xds/nodes reports.
func testXDSAcked(t *testing.T, m *harness.Mesh) {
	node, err := m.Gatehouse[0].Node("envoy-e2e-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"clusters", "endpoints", "listeners", "routes"} {
		st, ok := node.Types[typ]
		if !ok {
			t.Errorf("/xds/nodes: no %s sent", typ)
			continue
		}
		if !st.InSync || st.Acked != st.Current || st.NACK != nil {
			t.Errorf("/xds/nodes %s = %+v; want acked == current, no NACK", typ, st)
		}
	}
	v, err := m.Envoy.Versions()
	if err != nil {
		t.Fatal(err)
	}
	if v["clusters"] != node.Types["clusters"].Acked || v["listeners"] != node.Types["listeners"].Acked {
		t.Errorf("Envoy's config_dump versions %v; gatehouse says clusters %q, listeners %q", v, node.Types["clusters"].Acked, node.Types["listeners"].Acked)
	}
	if n := m.Envoy.Stat("cluster_manager.cds.update_rejected"); n != 0 {
		t.Errorf("cluster_manager.cds.update_rejected = %d; want 0", n)
	}
}

// testEnvoyNoWarnings: Envoy logged no warning about the bootstrap or the
// resources gatehouse pushed (deprecated fields, ignored settings).
func testEnvoyNoWarnings(t *testing.T, m *harness.Mesh) {
	for _, l := range strings.Split(m.Envoy.Log(), "\n") {
		if strings.Contains(l, "][warning][") || strings.Contains(l, "][error][") || strings.Contains(l, "][critical][") {
			t.Errorf("Envoy: %s", l)
		}
	}
}
