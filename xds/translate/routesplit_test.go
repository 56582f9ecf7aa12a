package translate_test

import (
	"reflect"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/xds/translate"
	"github.com/gatehouse/gatehouse/xds/xdstest"
)

func hcmOf(t *testing.T, res *translate.Resources, listener string) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, l := range res.Listeners {
		if l.GetName() != listener {
			continue
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		return hcm
	}
	t.Fatalf("no listener %q", listener)
	return nil
}

func routeNames(res *translate.Resources) []string {
	var out []string
	for _, rc := range res.Routes {
		out = append(out, rc.GetName())
	}
	return out
}

const splitYAML = `apiVersion: gatehouse/v1
xds: {routeSplit: %s}
listeners:
  - {name: public, address: 0.0.0.0:8080}
  - {name: api, kind: grpc}
clusters:
  - {name: a, endpoints: [{address: 10.0.0.1:80}]}
routes:
  - {id: a1, match: {hosts: [a.example.com], prefix: /a}, cluster: a}
  - {id: b1, match: {hosts: [b.example.com, c.example.com], prefix: /b}, cluster: a}
  - {id: g1, match: {prefix: /pkg.Svc/}, cluster: a, listeners: [api]}
`

// TestRouteSplitHost: routeSplit host gives each virtual host its own
// route configuration, selected by a scope per exact domain; the grpc
// API listener keeps one route configuration.
func TestRouteSplitHost(t *testing.T) {
	res, err := translate.Translate(loadString(t, strings.ReplaceAll(splitYAML, "%s", "host")))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"routes/public/a.example.com", "routes/public/b.example.com", "routes/api"}
	if got := routeNames(res); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("route configurations = %v; want %v", got, want)
	}
	hcm := hcmOf(t, res, "listener/public")
	if hcm.GetRds() != nil {
		t.Fatalf("split listener still uses RDS %q", hcm.GetRds().GetRouteConfigName())
	}
	if hcm.GetScopedRoutes().GetScopedRds() == nil {
		t.Fatalf("split listener's scoped routes = %v; want them over SRDS", hcm.GetScopedRoutes())
	}
	scopes := map[string]string{}
	for _, s := range res.ScopedRoutes {
		scopes[s.GetKey().GetFragments()[0].GetStringKey()] = s.GetRouteConfigurationName()
	}
	wantScopes := map[string]string{
		"a.example.com": "routes/public/a.example.com",
		"b.example.com": "routes/public/b.example.com",
		"c.example.com": "routes/public/b.example.com",
	}
	if len(scopes) != len(wantScopes) {
		t.Errorf("scopes = %v; want %v", scopes, wantScopes)
	}
	for k, v := range wantScopes {
		if scopes[k] != v {
			t.Errorf("scope %q → %q; want %q", k, scopes[k], v)
		}
	}
	if got := res.RouteConfigNames(hcm); len(got) != 2 {
		t.Errorf("RouteConfigNames = %v; want the two units", got)
	}
	// Every route configuration of the listener is reachable from it:
	// the subset a node gets holds all of them.
	sub := res.Subset(nil, config.ListenerHTTP)
	if got := routeNames(sub); len(got) != 2 || len(sub.ScopedRoutes) != 3 {
		t.Errorf("Subset(http) routes = %v, %d scopes; want both units and 3 scopes", got, len(sub.ScopedRoutes))
	}
	if sub := res.Subset(nil, config.ListenerGRPC); len(sub.ScopedRoutes) != 0 {
		t.Errorf("Subset(grpc) has %d scopes; want none", len(sub.ScopedRoutes))
	}
	if got := res.ClustersOf([]string{"routes/public/a.example.com"}); len(got) == 0 {
		t.Error("ClustersOf(a unit) is empty; want the listener's clusters")
	}
}

// TestRouteSplitAuto: auto leaves a small table whole, and a table with a
// route that no exact host selects whole whatever its size; it splits a
// large one, and then no unit comes near the message limit.
func TestRouteSplitAuto(t *testing.T) {
	res, err := translate.Translate(loadString(t, strings.ReplaceAll(splitYAML, "%s", "auto")))
	if err != nil {
		t.Fatal(err)
	}
	if got := routeNames(res); len(got) != 2 || got[0] != "routes/public" {
		t.Errorf("small table: route configurations = %v; want routes/public and routes/api", got)
	}

	big := xdstest.YAML(20000, 200, 50, "127.0.0.1:0", 0)
	res, err = translate.Translate(loadString(t, big))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Routes); got != 50 {
		t.Errorf("20,000 routes over 50 hosts: %d route configurations; want 50", got)
	}
	total, largest := 0, 0
	for _, rc := range res.Routes {
		n := proto.Size(rc)
		total += n
		largest = max(largest, n)
	}
	if largest > total/40 || largest > 512<<10 {
		t.Errorf("largest unit %d bytes of %d; want about 1/50th, under 512KiB", largest, total)
	}

	// One host-less route: no scope could select it, so no split.
	wild := big + "  - {id: catchall, match: {prefix: /}, cluster: c0}\n"
	res, err = translate.Translate(loadString(t, wild))
	if err != nil {
		t.Fatal(err)
	}
	if got := routeNames(res); len(got) != 1 || got[0] != "routes/public" {
		t.Errorf("with a host-less route: route configurations = %v; want routes/public alone", got)
	}
}

// TestRouteSplitHostRefusesWildcards: routeSplit host with a route that
// no exact host selects is refused by validation, at the route.
func TestRouteSplitHostRefusesWildcards(t *testing.T) {
	for _, tc := range []struct{ route, want string }{
		{`{id: w, match: {hosts: ["*.example.com"], prefix: /}, cluster: a}`, `routes[3].match.hosts[0]: "*.example.com" is a wildcard`},
		{`{id: n, match: {prefix: /n}, cluster: a}`, `routes[3].match.hosts: route "n" names no host`},
		{`{id: a2, match: {hosts: [a.example.com], prefix: /z}, cluster: a}`, `xds.routeSplit: host splits the routes of a config with one http listener only`},
	} {
		y := strings.ReplaceAll(splitYAML, "%s", "host") + "  - " + tc.route + "\n"
		if strings.Contains(tc.want, "one http listener") {
			y = strings.Replace(y, "  - {name: api, kind: grpc}", "  - {name: api, kind: grpc}\n  - {name: second, address: 0.0.0.0:8081}", 1)
		}
		_, err := config.LoadBytes("test.yaml", []byte(y), config.LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("routeSplit host with %s: err = %v; want %q", tc.route, err, tc.want)
		}
	}
}

// TestParallelRoutesAreDeterministic: routes are built in parallel; the
// route configurations and the origins come out the same every time, in
// config order.
func TestParallelRoutesAreDeterministic(t *testing.T) {
	cfg, err := config.LoadBytes("gatehouse.yaml", []byte(xdstest.YAML(3000, 100, 10, "127.0.0.1:0", 0)), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		again, err := translate.Translate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Routes) != len(first.Routes) {
			t.Fatalf("%d route configurations, then %d", len(first.Routes), len(again.Routes))
		}
		for i := range first.Routes {
			if !proto.Equal(first.Routes[i], again.Routes[i]) {
				t.Fatalf("route configuration %s differs between two translations", first.Routes[i].GetName())
			}
		}
		if !reflect.DeepEqual(first.Origins, again.Origins) {
			t.Fatal("origins differ between two translations")
		}
	}
	if o := first.Origins["r2999"]; len(o) != 1 || string(o[0].Path) != "routes[2999]" {
		t.Errorf("origin of r2999 = %v; want routes[2999]", o)
	}
}
