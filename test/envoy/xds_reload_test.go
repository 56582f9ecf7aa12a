package envoy_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/test/harness"
)

// xdsConfig routes /v to the cluster named by the template's caller;
// {{/*EXTRA*/}} is where a test adds a listener.
const xdsConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "{{.Admin}}"}
  shutdownTimeout: 3s
audit: {stdout: true}
authz: {address: "{{.Authz}}"}
xds: {address: "{{.XDS}}"}
listeners:
  - name: public
    address: "{{.Listener}}"
CLUSTERS_AND_ROUTES`

const xdsRoutesA = `
clusters:
  - name: a
    endpoints: [{address: "{{.Upstream "a"}}"}]
  - name: b
    endpoints: [{address: "{{.Upstream "b"}}"}]
routes:
  - id: v
    match: {prefix: /v}
    cluster: a
    authz: {public: true}
`

var xdsRoutesB = strings.Replace(xdsRoutesA, "cluster: a\n", "cluster: b\n", 1)

func xdsMesh(t *testing.T, delta bool) *harness.Mesh {
	return harness.Start(t, harness.Options{
		Config:    strings.Replace(xdsConfig, "CLUSTERS_AND_ROUTES", xdsRoutesA, 1),
		Upstreams: []string{"a", "b"},
		Delta:     delta,
	})
}

func upstreamOf(t *testing.T, m *harness.Mesh) string {
	t.Helper()
	r := harness.Send(t, harness.HTTP1(), harness.Request{URL: m.URL() + "/v"})
	e, ok := r.Echo()
	if r.Status != http.StatusOK || !ok {
		t.Fatalf("GET /v: %d %s %v\n%s", r.Status, r.Body, r.Header, m.Envoy.LogTail(40))
	}
	return e.Upstream
}

// TestXDSReload: a config edit is pushed and the next request follows the
// new route, without restarting Envoy or gatehouse; SotW and Delta.
func TestXDSReload(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			m := xdsMesh(t, delta)
			node, err := m.Gatehouse[0].Node("envoy-e2e-1")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]string{false: "sotw", true: "delta"}[delta]; node.Protocol != want {
				t.Errorf("/xds/nodes protocol = %q; want %q", node.Protocol, want)
			}
			if got := upstreamOf(t, m); got != "a" {
				t.Fatalf("before the edit: upstream %q; want a", got)
			}
			before := node.Types["routes"].Acked
			// Requests keep flowing through the change: none may fail
			// (the edit drops cluster a, which the old routes use).
			stop := make(chan struct{})
			failed := make(chan string, 1)
			go func() {
				defer close(failed)
				c := harness.HTTP1()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := harness.TrySend(c, harness.Request{URL: m.URL() + "/v"})
					if err != nil || r.Status != http.StatusOK {
						failed <- fmt.Sprintf("%v %v", r, err)
						return
					}
				}
			}()
			l := m.Gatehouse[0].Reload(mustRender(t, m, strings.Replace(xdsConfig, "CLUSTERS_AND_ROUTES", xdsRoutesB, 1)))
			if l["msg"] != "config reloaded" {
				t.Fatalf("reload: %v", l)
			}
			m.WaitSynced(1)
			time.Sleep(100 * time.Millisecond)
			close(stop)
			if f, ok := <-failed; ok {
				t.Errorf("a request failed during the change: %s\n%s", f, m.Envoy.Log())
			}
			if got := upstreamOf(t, m); got != "b" {
				t.Errorf("after the edit: upstream %q; want b", got)
			}
			node, _ = m.Gatehouse[0].Node("envoy-e2e-1")
			if node.Types["routes"].Acked == before {
				t.Errorf("routes version unchanged (%s) after a route edit", before)
			}
			if got := m.Envoy.Stat("server.live"); got != 1 {
				t.Errorf("Envoy server.live = %d", got)
			}
		})
	}
}

func mustRender(t *testing.T, m *harness.Mesh, tmpl string) string {
	t.Helper()
	s, err := m.Render(tmpl, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestXDSNACK: an edit that gatehouse cannot know is wrong — a listener on
// a port another process holds on the Envoy host — is NACKed by Envoy;
// gatehouse reports it in /xds/nodes with the config's file:line, counts
// it and audits it, and Envoy keeps serving the last good config. SotW and
// Delta.
func TestXDSNACK(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			m := xdsMesh(t, delta)
			held, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			g := m.Gatehouse[0]
			good, _ := g.Node("envoy-e2e-1")
			withBusy := strings.Replace(xdsConfig, "CLUSTERS_AND_ROUTES", xdsRoutesB, 1)
			withBusy = strings.Replace(withBusy, "    address: \"{{.Listener}}\"\n", "    address: \"{{.Listener}}\"\n  - name: busy\n    address: \""+held.Addr().String()+"\"\n", 1)
			if l := g.Reload(mustRender(t, m, withBusy)); l["msg"] != "config reloaded" {
				t.Fatalf("reload: %v (gatehouse cannot know the port is taken on Envoy's host)", l)
			}
			var node *harness.XDSNode
			deadline := time.Now().Add(20 * time.Second)
			for {
				node, err = g.Node("envoy-e2e-1")
				if err == nil && node.Types["listeners"].NACK != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no NACK of listeners in /xds/nodes within 20s: %+v\n%s", node, m.Envoy.LogTail(20))
				}
				time.Sleep(100 * time.Millisecond)
			}
			nack := node.Types["listeners"].NACK
			if !strings.Contains(nack.Detail, "busy") || !strings.Contains(strings.ToLower(nack.Detail), "address already in use") {
				t.Errorf("NACK detail %q; want Envoy's error naming listener busy", nack.Detail)
			}
			origins := ""
			for _, o := range nack.Origins {
				origins += fmtAny(o["pos"]) + " "
			}
			if !strings.Contains(origins, "gatehouse.yaml:") {
				t.Errorf("NACK origins %v; want the listener's file:line", nack.Origins)
			}
			if node.Types["listeners"].Acked != good.Types["listeners"].Acked {
				t.Errorf("acked listeners %q; want the last good %q kept", node.Types["listeners"].Acked, good.Types["listeners"].Acked)
			}
			if n := g.Metric("gatehouse_xds_nacks_total", `type="listeners"`); n < 1 {
				t.Errorf("gatehouse_xds_nacks_total{type=listeners} = %v; want >= 1", n)
			}
			g.WaitAudit("the NACK", func(l map[string]any) bool {
				return l["kind"] == "xds.nack" && strings.Contains(fmtAny(l["detail"]), "busy")
			})
			// Envoy keeps serving: its listener, and routes that reach a
			// cluster it has. SotW routes still send to a (the strict ADS
			// cache answers no routes while Envoy's listeners differ from
			// the snapshot's), and a is kept for them though the edit
			// dropped it; Delta routes moved to b.
			want := map[bool]string{false: "a", true: "b"}[delta]
			if got := upstreamOf(t, m); got != want {
				t.Errorf("after the NACK: upstream %q; want %s", got, want)
			}
			if n := m.Envoy.Stat("listener_manager.lds.update_rejected"); n < 1 {
				t.Errorf("Envoy's listener_manager.lds.update_rejected = %d; want >= 1", n)
			}
		})
	}
}

func fmtAny(v any) string {
	s, _ := v.(string)
	return s
}
