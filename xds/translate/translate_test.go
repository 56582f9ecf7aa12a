package translate_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/contract"
	"github.com/gatehouse/gatehouse/xds/render"
	"github.com/gatehouse/gatehouse/xds/translate"
)

var update = flag.Bool("update", false, "rewrite the outputs of testdata/golden/* (and delete stale ones)")

func load(t testing.TB, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path, config.LoadOptions{})
	if err != nil {
		t.Fatalf("Load(%s) = %v", path, err)
	}
	return cfg
}

func loadString(t testing.TB, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.LoadBytes("test.yaml", []byte(yaml), config.LoadOptions{})
	if err != nil {
		t.Fatalf("LoadBytes() = %v", err)
	}
	return cfg
}

// TestGolden translates each case of testdata/golden: a directory per
// case, config.yaml in, and out the resources it renders, one file per
// type (listeners.yaml, routes.yaml, scoped_routes.yaml, clusters.yaml, endpoints.yaml; a type
// with no resource has no file). go test -update rewrites the outputs and
// deletes those no case renders any more.
func TestGolden(t *testing.T) {
	cases, _ := filepath.Glob("testdata/golden/*")
	if len(cases) == 0 {
		t.Fatal("no testdata/golden/* cases")
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := filepath.Join(dir, "config.yaml")
			produced := map[string]bool{in: true}
			if _, err := os.Stat(in); err != nil && !*update {
				t.Fatalf("%s has no config.yaml (run go test -update to remove what is left of it)", dir)
			} else if err == nil {
				// Rendering reads no secret (as `gatehouse render`).
				cfg, err := config.Load(in, config.LoadOptions{SkipSecrets: true})
				if err != nil {
					t.Fatalf("Load(%s) = %v", in, err)
				}
				res, err := translate.Translate(cfg)
				if err != nil {
					t.Fatalf("Translate(%s) = %v", in, err)
				}
				for typ, msgs := range map[string][]proto.Message{
					"listeners": msgs(res.Listeners), "routes": msgs(res.Routes),
					"clusters": msgs(res.Clusters), "endpoints": msgs(res.Endpoints), "scoped_routes": msgs(res.ScopedRoutes),
				} {
					if len(msgs) > 0 {
						out := filepath.Join(dir, typ+".yaml")
						produced[out] = true
						checkGolden(t, out, renderAll(t, msgs))
					}
				}
			}
			if *update {
				// Outputs no case renders any more: a type the config no
				// longer has, or a case whose config.yaml was deleted.
				stale, _ := filepath.Glob(filepath.Join(dir, "*"))
				for _, f := range stale {
					if !produced[f] {
						if err := os.Remove(f); err != nil {
							t.Error(err)
						}
					}
				}
				_ = os.Remove(dir) // only when it is left empty
			}
		})
	}
}

// TestGoldenCoversRoutes: every field a route can declare (its match, its
// action, its authz, ratelimit and extproc sections) is written in at
// least one golden case, so that a change to how any of them translates
// shows in a golden diff.
func TestGoldenCoversRoutes(t *testing.T) {
	var all strings.Builder
	cases, _ := filepath.Glob("testdata/golden/*/config.yaml")
	for _, f := range cases {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	text := all.String()
	for _, typ := range []reflect.Type{reflect.TypeFor[config.Route](), reflect.TypeFor[config.Match]()} {
		for _, name := range yamlFields(typ) {
			if !regexp.MustCompile(`[{ ,\n]` + regexp.QuoteMeta(name) + `:`).MatchString(text) {
				t.Errorf("no golden case declares %s.%s; add one under testdata/golden", typ.Name(), name)
			}
		}
	}
}

// yamlFields lists the YAML field names of a struct, inline fields
// included.
func yamlFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case strings.Contains(opts, "inline"):
			out = append(out, yamlFields(f.Type)...)
		case name != "" && name != "-":
			out = append(out, name)
		}
	}
	return out
}

func renderAll(t *testing.T, msgs []proto.Message) []byte {
	t.Helper()
	var out bytes.Buffer
	for _, m := range msgs {
		b, err := render.Message(m, render.YAML)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes()
}

// checkGolden compares got with the file out, or writes it with -update.
func checkGolden(t *testing.T, out string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(out, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	golden, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(golden), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; run go test -update to accept):\n%s", out, diff)
	}
}

func msgs[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// TestDeterministic: the same config gives the same bytes, whatever the
// order maps are iterated in.
func TestDeterministic(t *testing.T) {
	var first []byte
	for range 20 {
		res, err := translate.Translate(load(t, "testdata/golden/full/config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := render.Resources(res, render.JSON)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Routes {
			wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, wire...)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Fatal("Translate() output differs between runs of the same config")
		}
	}
}

const contractConfig = `apiVersion: gatehouse/v1
authz: {}
extproc: {}
ratelimit: {}
xds: {}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
  - {name: c, endpoints: [{address: 10.0.0.1:80}]}
routes:
  - {id: orders.read, match: {hosts: [api.example.com], prefix: /orders}, cluster: c}
  - {id: catch-all, match: {prefix: /}, cluster: c}
`

func findRoute(t *testing.T, res *translate.Resources, id string) *routev3.Route {
	t.Helper()
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetName() == id {
					return r
				}
			}
		}
	}
	t.Fatalf("no route named %q", id)
	return nil
}

// TestContract checks what the other components rely on: the route name
// is the id, the id is in route metadata, ext_authz's context extension
// and ext_proc's attributes, the filter order and names, and the rate
// limit descriptor.
func TestContract(t *testing.T) {
	cfg := loadString(t, contractConfig)
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := findRoute(t, res, "orders.read")
	if got := r.GetMetadata().GetFilterMetadata()[contract.RouteMetadataNamespace].GetFields()[contract.RouteMetadataID].GetStringValue(); got != "orders.read" {
		t.Errorf("route metadata %s.%s = %q; want %q", contract.RouteMetadataNamespace, contract.RouteMetadataID, got, "orders.read")
	}

	authz := &extauthzv3.ExtAuthzPerRoute{}
	if err := r.GetTypedPerFilterConfig()[contract.AuthzFilterName].UnmarshalTo(authz); err != nil {
		t.Fatalf("ext_authz per-route config: %v", err)
	}
	if got := authz.GetCheckSettings().GetContextExtensions()[contract.ContextExtensionRoute]; got != "orders.read" {
		t.Errorf("context_extensions[%q] = %q; want %q", contract.ContextExtensionRoute, got, "orders.read")
	}
	if authz.GetCheckSettings().GetWithRequestBody() != nil {
		t.Errorf("with_request_body = %v; want unset on a route that needs no body", authz.GetCheckSettings().GetWithRequestBody())
	}
	if slices.ContainsFunc(contract.IdentityHeaders, func(h string) bool { return slices.Contains(r.GetRequestHeadersToRemove(), h) }) {
		t.Errorf("request_headers_to_remove = %v on an authz route; they would wipe ext_authz's headers", r.GetRequestHeadersToRemove())
	}

	// Each ext_proc stage is disabled at the filter level and enabled by
	// a route's per-route config only where ExtProcStageNeeds asks for it.
	for _, st := range []struct {
		stage  config.ExtProcStage
		filter string
	}{{config.ExtProcStagePreAuthz, contract.ExtProcPreAuthzFilterName}, {config.ExtProcStagePostAuthz, contract.ExtProcPostAuthzFilterName}} {
		_, has := r.GetTypedPerFilterConfig()[st.filter]
		needs := cfg.RouteByID("orders.read").ExtProcStageNeeds(cfg, st.stage)
		if has == needs.Disabled {
			t.Errorf("%s per-route config present = %v; want %v (ExtProcStageNeeds.Disabled = %v)", st.filter, has, !needs.Disabled, needs.Disabled)
		}
	}
	if _, has := r.GetTypedPerFilterConfig()[contract.ExtProcFilterName]; has {
		t.Errorf("per-route config for %s, a filter HTTP listeners do not have", contract.ExtProcFilterName)
	}

	hcm := &hcmv3.HttpConnectionManager{}
	if err := res.Listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	// header_mutation first: the rate limit filters read the tier header
	// and the upstream the rate limiter's mark, which a client must not
	// send (TestRateLimitFailureModes).
	// Then the ext_proc stages around ext_authz and the rate limit:
	// hygiene before anyone looks at the request, the contract and the
	// idempotency store only for callers let in.
	wantNames := []string{"envoy.filters.http.header_mutation", contract.ExtProcPreAuthzFilterName, contract.AuthzFilterName, "envoy.filters.http.ratelimit", contract.ExtProcPostAuthzFilterName, "envoy.filters.http.router"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("HTTP filters (-want +got):\n%s", diff)
	}
	for _, f := range hcm.GetHttpFilters() {
		// Only ext_proc is off by default; ext_authz must run on every
		// route that does not turn it off explicitly (fail closed).
		if f.GetDisabled() != strings.HasPrefix(f.GetName(), contract.ExtProcFilterName) {
			t.Errorf("filter %s disabled = %v", f.GetName(), f.GetDisabled())
		}
	}
	if !hcm.GetStripAnyHostPort() {
		t.Error("strip_any_host_port = false; want true (routematch strips ports)")
	}
	for i, st := range map[int]config.ExtProcStage{1: config.ExtProcStagePreAuthz, 4: config.ExtProcStagePostAuthz} {
		proc := &extprocfilterv3.ExternalProcessor{}
		if err := hcm.GetHttpFilters()[i].GetTypedConfig().UnmarshalTo(proc); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(proc.GetRequestAttributes(), contract.ExtProcRouteAttribute) {
			t.Errorf("%s request_attributes = %v; want %q", st, proc.GetRequestAttributes(), contract.ExtProcRouteAttribute)
		}
		// The stage reaches gatehouse as the stream's metadata.
		md := proc.GetGrpcService().GetInitialMetadata()
		if len(md) != 1 || md[0].GetKey() != contract.ExtProcStageMetadata || md[0].GetValue() != string(st) {
			t.Errorf("%s grpc_service.initial_metadata = %v; want %s: %s", st, md, contract.ExtProcStageMetadata, st)
		}
		// Only the second stage reads ext_authz's verdict.
		fwd := proc.GetMetadataOptions().GetForwardingNamespaces().GetUntyped()
		if want := st == config.ExtProcStagePostAuthz; slices.Contains(fwd, contract.AuthzFilterName) != want {
			t.Errorf("%s forwards metadata namespaces %v; want %s forwarded: %v", st, fwd, contract.AuthzFilterName, want)
		}
	}
	if res.Routes[0].GetVirtualHosts()[0].GetDomains()[0] != "api.example.com" {
		t.Errorf("first virtual host = %v; want api.example.com", res.Routes[0].GetVirtualHosts()[0].GetDomains())
	}
	// The route of "*" must not be in api.example.com's virtual host:
	// Envoy and routematch never fall through to a less specific host.
	for _, vh := range res.Routes[0].GetVirtualHosts() {
		if slices.Contains(vh.GetDomains(), "api.example.com") && len(vh.GetRoutes()) != 1 {
			t.Errorf("virtual host %v holds %d routes; want only orders.read", vh.GetDomains(), len(vh.GetRoutes()))
		}
	}
}

// TestRateLimitDescriptor checks the descriptor gatehouse's limiter reads
// (route, tier, subject, then header entries), on a route whose
// RateLimitNeeds is enabled.
func TestRateLimitDescriptor(t *testing.T) {
	n := translate.RateLimitsForTest("orders.read", config.RateLimitNeeds{
		Enabled:       true,
		HeaderEntries: []config.HeaderDescriptor{{Header: "x-tenant", Key: "tenant"}},
	})
	meta := func(key, field string) *routev3.RateLimit_Action {
		return &routev3.RateLimit_Action{ActionSpecifier: &routev3.RateLimit_Action_Metadata{Metadata: &routev3.RateLimit_Action_MetaData{
			DescriptorKey: key,
			MetadataKey: &metadatav3.MetadataKey{Key: contract.AuthzFilterName,
				Path: []*metadatav3.MetadataKey_PathSegment{{Segment: &metadatav3.MetadataKey_PathSegment_Key{Key: field}}}},
			DefaultValue: contract.AnonymousTier,
			Source:       routev3.RateLimit_Action_MetaData_DYNAMIC,
		}}}
	}
	want := []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
		{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
			DescriptorKey: contract.DescriptorRoute, DescriptorValue: "orders.read"}}},
		meta(contract.DescriptorTier, contract.MetaTier),
		meta(contract.DescriptorSubject, contract.MetaSubject),
		{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
			HeaderName: "x-tenant", DescriptorKey: "tenant", SkipIfAbsent: true}}},
	}}}
	if diff := cmp.Diff(want, n, protocmp.Transform()); diff != "" {
		t.Errorf("rate limits (-want +got):\n%s", diff)
	}
	if got := translate.RateLimitsForTest("x", config.RateLimitNeeds{}); got != nil {
		t.Errorf("rate limits of a disabled route = %v; want none", got)
	}
}

// TestPerRouteNeeds checks per-route filter config against each
// component's needs: body buffering only where asked, filters disabled
// where asked, identity headers stripped where ext_authz does not run.
func TestPerRouteNeeds(t *testing.T) {
	tests := []struct {
		name      string
		authz     config.AuthzNeeds
		extproc   config.ExtProcNeeds
		wantStrip bool
	}{
		{name: "webhook body", authz: config.AuthzNeeds{RequestBody: true, MaxRequestBytes: 65536}, extproc: config.ExtProcNeeds{Disabled: true}},
		{name: "public route", authz: config.AuthzNeeds{Disabled: true}, extproc: config.ExtProcNeeds{RequestHeaders: true, RequestBody: config.BodyBuffered, ResponseBody: config.BodyNone}, wantStrip: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, strip, err := translate.PerRouteForTest("r", tt.authz, config.ExtProcNeeds{Disabled: true}, tt.extproc)
			if err != nil {
				t.Fatal(err)
			}
			if strip != tt.wantStrip {
				t.Errorf("strip identity headers = %v; want %v", strip, tt.wantStrip)
			}
			az := &extauthzv3.ExtAuthzPerRoute{}
			if err := got[contract.AuthzFilterName].UnmarshalTo(az); err != nil {
				t.Fatal(err)
			}
			if az.GetDisabled() != tt.authz.Disabled {
				t.Errorf("ext_authz disabled = %v; want %v", az.GetDisabled(), tt.authz.Disabled)
			}
			wantBody := (*extauthzv3.BufferSettings)(nil)
			if tt.authz.RequestBody {
				wantBody = &extauthzv3.BufferSettings{MaxRequestBytes: tt.authz.MaxRequestBytes, PackAsBytes: true}
			}
			if diff := cmp.Diff(wantBody, az.GetCheckSettings().GetWithRequestBody(), protocmp.Transform()); diff != "" {
				t.Errorf("with_request_body (-want +got):\n%s", diff)
			}
			if _, has := got[contract.ExtProcPreAuthzFilterName]; has {
				t.Errorf("pre_authz per-route config present for a stage with nothing to do")
			}
			epAny, has := got[contract.ExtProcPostAuthzFilterName]
			if has == tt.extproc.Disabled {
				t.Errorf("ext_proc per-route config present = %v; want %v", has, !tt.extproc.Disabled)
			}
			if !tt.extproc.Disabled {
				ep := &extprocfilterv3.ExtProcPerRoute{}
				if err := epAny.UnmarshalTo(ep); err != nil {
					t.Fatal(err)
				}
				m := ep.GetOverrides().GetProcessingMode()
				if m.GetRequestHeaderMode() != extprocfilterv3.ProcessingMode_SEND || m.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP ||
					m.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED || m.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
					t.Errorf("processing mode = %v; want request headers SEND + BUFFERED body, nothing else", m)
				}
			}
		})
	}
}

// TestClusters checks the cluster options that are easy to get subtly
// wrong: outlier detectors not listed are off, DNS clusters carry their
// endpoints inline, upstream TLS checks the SNI name.
func TestClusters(t *testing.T) {
	res, err := translate.Translate(load(t, "testdata/golden/full/config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*clusterv3.Cluster{}
	for _, c := range res.Clusters {
		byName[c.GetName()] = c
	}
	od := byName["orders"].GetOutlierDetection()
	if od.GetEnforcingSuccessRate().GetValue() != 0 {
		t.Errorf("enforcing_success_rate = %v; want 0 (not configured)", od.GetEnforcingSuccessRate())
	}
	if od.GetEnforcingFailurePercentage().GetValue() != 100 || od.GetFailurePercentageThreshold().GetValue() != 50 {
		t.Errorf("failure percentage = %v/%v; want 50%% enforced at 100", od.GetFailurePercentageThreshold(), od.GetEnforcingFailurePercentage())
	}
	if byName["users"].GetLoadAssignment() == nil || byName["users"].GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("users cluster = %v; want STRICT_DNS with an inline load assignment", byName["users"])
	}
	for _, svc := range []string{"gatehouse.authz", "gatehouse.extproc", "gatehouse.ratelimit"} {
		if byName[svc] == nil {
			t.Errorf("no cluster %q for gatehouse's own service", svc)
		}
	}
	if got := byName["gatehouse.authz"].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); got != "gatehouse" {
		t.Errorf("gatehouse.authz address = %q; want the xds.services address host %q", got, "gatehouse")
	}
	if got := byName["gatehouse.ratelimit"].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.1" {
		t.Errorf("gatehouse.ratelimit address = %q; want 127.0.0.1 for the wildcard listen address", got)
	}
}

// TestNoXDSSectionKeepsDefaults: a config without an xds section (which
// `gatehouse render` still renders) gets the same filters and service
// clusters as one with `xds: {}`: fail-closed modes and the default
// timeouts, never zero values (an empty ratelimitFailureMode rendered the
// rate limit filter fail-open, and zero timeouts as none).
func TestNoXDSSectionKeepsDefaults(t *testing.T) {
	without := strings.Replace(contractConfig, "xds: {}\n", "", 1)
	if without == contractConfig {
		t.Fatal("contractConfig has no `xds: {}` line to remove")
	}
	want, err := translate.Translate(loadString(t, contractConfig))
	if err != nil {
		t.Fatal(err)
	}
	got, err := translate.Translate(loadString(t, without))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.Listeners, got.Listeners, protocmp.Transform()); diff != "" {
		t.Errorf("listeners without an xds section (-with xds: {} +without):\n%s", diff)
	}
	if diff := cmp.Diff(want.Clusters, got.Clusters, protocmp.Transform()); diff != "" {
		t.Errorf("clusters without an xds section (-with xds: {} +without):\n%s", diff)
	}
}

// TestIdentityHeadersStripped: through Translate, every route where
// ext_authz does not run (a public route, or no authz section at all)
// removes the identity headers a client could send; a route where it runs
// leaves them to ext_authz, which overwrites them.
func TestIdentityHeadersStripped(t *testing.T) {
	withPublic := strings.Replace(contractConfig, "prefix: /}, cluster: c}", "prefix: /}, cluster: c, authz: {public: true}}", 1)
	if withPublic == contractConfig {
		t.Fatal("contractConfig has no catch-all route to make public")
	}
	tests := []struct {
		name string
		yaml string
		want map[string]bool // route id → strips
	}{
		{"authz on every route", contractConfig, map[string]bool{"orders.read": false, "catch-all": false}},
		{"public route", withPublic, map[string]bool{"orders.read": false, "catch-all": true}},
		{"no authz section", strings.Replace(contractConfig, "authz: {}\n", "", 1), map[string]bool{"orders.read": true, "catch-all": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := translate.Translate(loadString(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for id, strips := range tt.want {
				removed := findRoute(t, res, id).GetRequestHeadersToRemove()
				for _, h := range contract.IdentityHeaders {
					if slices.Contains(removed, h) != strips {
						t.Errorf("route %s: request_headers_to_remove = %v; want %s removed = %v", id, removed, h, strips)
					}
				}
			}
		})
	}
}

// TestAuthzFailOpenStripsIdentityFirst: where ext_authz may fail open, a
// header_mutation filter ahead of every other removes the identity headers
// a client sent (a failed-open ext_authz would leave them for the
// upstream); the default fail-closed chain without a rate limiter has no
// such filter. With one, the filter also removes the rate limiter's mark.
func TestAuthzFailOpenStripsIdentityFirst(t *testing.T) {
	noRL := strings.Replace(contractConfig, "ratelimit: {}\n", "", 1)
	open := strings.Replace(noRL, "xds: {}\n", "xds: {services: {authzFailureMode: open}}\n", 1)
	if open == noRL || noRL == contractConfig {
		t.Fatal("contractConfig has no `xds: {}` or `ratelimit: {}` line")
	}
	withRL := slices.Concat(contract.IdentityHeaders, []string{contract.HeaderRateLimit})
	for _, tt := range []struct {
		name, yaml string
		strips     []string
	}{
		{"closed", noRL, nil},
		{"open", open, contract.IdentityHeaders},
		{"closed with a rate limiter", contractConfig, withRL},
		{"open with a rate limiter", strings.Replace(contractConfig, "xds: {}\n", "xds: {services: {authzFailureMode: open}}\n", 1), withRL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := translate.Translate(loadString(t, tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := res.Listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			if err := hcm.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			first := hcm.GetHttpFilters()[0]
			if got := first.GetName() == "envoy.filters.http.header_mutation"; got != (tt.strips != nil) {
				t.Fatalf("first filter = %s; want header_mutation first = %v", first.GetName(), tt.strips != nil)
			}
			if tt.strips == nil {
				return
			}
			hm := &headermutationv3.HeaderMutation{}
			if err := first.GetTypedConfig().UnmarshalTo(hm); err != nil {
				t.Fatal(err)
			}
			if err := hm.ValidateAll(); err != nil {
				t.Fatal(err)
			}
			var removed []string
			for _, m := range hm.GetMutations().GetRequestMutations() {
				removed = append(removed, m.GetRemove())
			}
			if diff := cmp.Diff(tt.strips, removed); diff != "" {
				t.Errorf("removed headers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWebhookBodyPackedAsBytes: Envoy reads pack_as_bytes only from the
// ext_authz filter's own settings (envoyproxy/envoy#35623), so when a route
// needs the raw body the filter carries it, and the routes that need no
// body turn buffering off; without a webhook route nothing changes.
func TestWebhookBodyPackedAsBytes(t *testing.T) {
	const hooks = `apiVersion: gatehouse/v1
authz:
  jwt: {issuers: [{name: a, issuer: x, algorithms: [RS256], jwks: "{\"keys\":[]}", audiences: [x]}]}
  webhooks:
    - {name: gh, scheme: github, secrets: [env:X], maxBodySize: 64KiB}
    - {name: gl, scheme: gitlab, secrets: [env:X]}
xds: {}
listeners: [{name: l, address: "127.0.0.1:10000"}]
clusters: [{name: c, endpoints: [{address: "127.0.0.1:8080"}]}]
routes:
  - {id: hook, match: {prefix: /hook}, cluster: c, authz: {webhook: gh}}
  - {id: gitlab, match: {prefix: /gitlab}, cluster: c, authz: {webhook: gl}}
  - {id: api, match: {prefix: /api}, cluster: c, authz: {jwt: {}}}
  - {id: open, match: {prefix: /}, cluster: c, authz: {public: true}}
`
	filterBody := func(t *testing.T, res *translate.Resources) *extauthzv3.BufferSettings {
		t.Helper()
		hcm := &hcmv3.HttpConnectionManager{}
		if err := res.Listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		for _, f := range hcm.GetHttpFilters() {
			if f.GetName() == contract.AuthzFilterName {
				az := &extauthzv3.ExtAuthz{}
				if err := f.GetTypedConfig().UnmarshalTo(az); err != nil {
					t.Fatal(err)
				}
				if err := az.ValidateAll(); err != nil {
					t.Fatal(err)
				}
				return az.GetWithRequestBody()
			}
		}
		t.Fatal("no ext_authz filter")
		return nil
	}
	perRoute := func(t *testing.T, res *translate.Resources, id string) *extauthzv3.ExtAuthzPerRoute {
		t.Helper()
		az := &extauthzv3.ExtAuthzPerRoute{}
		if err := findRoute(t, res, id).GetTypedPerFilterConfig()[contract.AuthzFilterName].UnmarshalTo(az); err != nil {
			t.Fatal(err)
		}
		if err := az.ValidateAll(); err != nil {
			t.Fatal(err)
		}
		return az
	}
	cfg, err := config.LoadBytes("hooks.yaml", []byte(hooks), config.LoadOptions{LookupEnv: func(string) (string, bool) { return "s", true }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := translate.Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := &extauthzv3.BufferSettings{MaxRequestBytes: 1, AllowPartialMessage: true, PackAsBytes: true}
	if diff := cmp.Diff(want, filterBody(t, res), protocmp.Transform()); diff != "" {
		t.Errorf("ext_authz filter with_request_body (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&extauthzv3.BufferSettings{MaxRequestBytes: 64 << 10, PackAsBytes: true}, perRoute(t, res, "hook").GetCheckSettings().GetWithRequestBody(), protocmp.Transform()); diff != "" {
		t.Errorf("hook route with_request_body (-want +got):\n%s", diff)
	}
	for _, id := range []string{"gitlab", "api"} {
		if cs := perRoute(t, res, id).GetCheckSettings(); !cs.GetDisableRequestBodyBuffering() || cs.GetWithRequestBody() != nil {
			t.Errorf("route %s check_settings = %v; want body buffering disabled", id, cs)
		}
	}
	if !perRoute(t, res, "open").GetDisabled() {
		t.Error("public route: ext_authz not disabled")
	}

	res, err = translate.Translate(loadString(t, contractConfig))
	if err != nil {
		t.Fatal(err)
	}
	if b := filterBody(t, res); b != nil {
		t.Errorf("ext_authz filter with_request_body = %v without a webhook route; want unset", b)
	}
	if cs := perRoute(t, res, "orders.read").GetCheckSettings(); cs.GetDisableRequestBodyBuffering() {
		t.Error("disable_request_body_buffering set without a webhook route")
	}
}

// TestRouteAuthzFailureMode: Envoy has no per-route failure mode for
// ext_authz, so a route whose authz.failureMode differs from the
// listener's is checked by a second ext_authz filter of the other mode
// (off by default, on for that route, the first one off there), its rate
// limit reads the identity from the same metadata namespace (Envoy's
// extension name, whichever filter wrote it), and client-sent identity
// headers are stripped first.
func TestRouteAuthzFailureMode(t *testing.T) {
	yaml := strings.Replace(contractConfig, "  - {id: catch-all, match: {prefix: /}, cluster: c}\n",
		"  - {id: lenient, match: {prefix: /status}, cluster: c, authz: {apiKey: {}, failureMode: open}}\n  - {id: catch-all, match: {prefix: /}, cluster: c}\n", 1)
	yaml = strings.Replace(yaml, "authz: {}\n", "authz: {apiKeys: {keys: [{id: k, hash: \"sha256:"+strings.Repeat("a", 64)+"\", subject: s}]}}\n", 1)
	yaml = strings.Replace(yaml, "ratelimit: {}\n", "ratelimit: {default: [{requests: 1, per: second}]}\n", 1)
	res, err := translate.Translate(loadString(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := res.Listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	authz := map[string]*extauthzv3.ExtAuthz{}
	disabled := map[string]bool{}
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
		disabled[f.GetName()] = f.GetDisabled()
		a := &extauthzv3.ExtAuthz{}
		if f.GetTypedConfig().UnmarshalTo(a) == nil {
			authz[f.GetName()] = a
		}
	}
	want := []string{"envoy.filters.http.header_mutation", contract.ExtProcPreAuthzFilterName, contract.AuthzFilterName, contract.AuthzFailOpenFilterName, "envoy.filters.http.ratelimit", "envoy.filters.http.ratelimit.fail_closed", contract.ExtProcPostAuthzFilterName, "envoy.filters.http.router"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("filters (-want +got):\n%s", diff)
	}
	if authz[contract.AuthzFilterName].GetFailureModeAllow() || !authz[contract.AuthzFailOpenFilterName].GetFailureModeAllow() {
		t.Error("the listener's ext_authz must fail closed and the second one open")
	}
	if disabled[contract.AuthzFilterName] || !disabled[contract.AuthzFailOpenFilterName] {
		t.Error("the second ext_authz filter must be off by default, the first on")
	}
	per := func(id, filter string) *extauthzv3.ExtAuthzPerRoute {
		a, ok := findRoute(t, res, id).GetTypedPerFilterConfig()[filter]
		if !ok {
			return nil
		}
		m := &extauthzv3.ExtAuthzPerRoute{}
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := per("lenient", contract.AuthzFilterName); !m.GetDisabled() {
		t.Errorf("lenient: listener's ext_authz per-route = %v; want disabled", m)
	}
	if m := per("lenient", contract.AuthzFailOpenFilterName); m.GetCheckSettings().GetContextExtensions()[contract.ContextExtensionRoute] != "lenient" {
		t.Errorf("lenient: second ext_authz per-route = %v; want on, with the route id", m)
	}
	if m := per("catch-all", contract.AuthzFailOpenFilterName); m != nil {
		t.Errorf("catch-all: second ext_authz per-route = %v; want none (off)", m)
	}
	for id, ns := range map[string]string{"lenient": contract.AuthzFilterName, "catch-all": contract.AuthzFilterName} {
		rls := findRoute(t, res, id).GetRoute().GetRateLimits()
		if len(rls) == 0 || len(rls[0].GetActions()) < 2 {
			t.Fatalf("%s: rate limits %v; want the route/tier/subject descriptor", id, rls)
		}
		if got := rls[0].GetActions()[1].GetMetadata().GetMetadataKey().GetKey(); got != ns {
			t.Errorf("%s: the tier is read from metadata namespace %q; want %q", id, got, ns)
		}
	}
}

// rateLimitConfig limits gold and anonymous on "api", and sets its own
// failure modes on "strict" (closed for every tier) and "public" (no
// limit for the anonymous tier); FAILURE and SERVICES are replaced.
const rateLimitConfig = `apiVersion: gatehouse/v1
authz: {}
ratelimit:
  tiers:
    gold: [{requests: 10, per: second}]
    anonymous: [{requests: 1, per: second}]
  FAILURE
xds: {services: {SERVICES}}
listeners:
  - {name: public, address: 0.0.0.0:8080}
clusters:
  - {name: c, endpoints: [{address: 10.0.0.1:80}]}
routes:
  - {id: strict, match: {prefix: /strict}, cluster: c, ratelimit: {failureMode: closed}}
  - {id: public, match: {prefix: /public}, cluster: c, ratelimit: {tiers: {anonymous: []}}}
  - {id: api, match: {prefix: /}, cluster: c}
`

// rlFilter is one rate limit filter of a translation.
type rlFilter struct {
	Name       string
	Deny       bool
	Stage      uint32
	StatPrefix string
}

// rlEntry is one rate limit entry of a route: its stage and, when it is
// gated by tier, the gate.
type rlEntry struct {
	Stage              uint32
	Gate               string // regex on x-gatehouse-tier
	Expect             bool
	MissingIsAnonymous bool
	Mode               string
}

// TestRateLimitFailureModes: what Envoy does when gatehouse's rate limit
// service cannot answer follows the tiers' failure modes. With verified
// tiers open and anonymous closed (the defaults) there are two rate limit
// filters, and a route sends each tier's descriptor through the filter of
// its mode, gated by the tier header (a missing one is anonymous); with
// one mode for everything there is one filter and no gate, and
// xds.services.ratelimitFailureMode makes it one filter whatever the
// tiers say. A tier the route does not limit fails open.
func TestRateLimitFailureModes(t *testing.T) {
	tests := []struct {
		name, failure, services string
		filters                 []rlFilter
		routes                  map[string][]rlEntry
	}{
		{"defaults", "", "",
			[]rlFilter{{"envoy.filters.http.ratelimit", false, 0, ""}, {"envoy.filters.http.ratelimit.fail_closed", true, 1, "fail_closed"}},
			map[string][]rlEntry{
				"api": {{1, "(?:anonymous)?", true, true, "closed"}, {0, "(?:anonymous)?", false, true, "open"}},
				// Closed on this route, but a tier named nowhere has no
				// limit here: open.
				"strict": {{1, "(?:anonymous|gold)?", true, true, "closed"}, {0, "(?:anonymous|gold)?", false, true, "open"}},
				"public": {{0, "", false, false, ""}},
			}},
		{"every tier open in one line, but for a closed route", "failureMode: open", "",
			[]rlFilter{{"envoy.filters.http.ratelimit", false, 0, ""}, {"envoy.filters.http.ratelimit.fail_closed", true, 1, "fail_closed"}},
			map[string][]rlEntry{
				"api":    {{0, "", false, false, ""}},
				"strict": {{1, "(?:anonymous|gold)?", true, true, "closed"}, {0, "(?:anonymous|gold)?", false, true, "open"}},
				"public": {{0, "", false, false, ""}},
			}},
		{"everything closed in one line, every tier limited", "failureMode: closed\n  default: [{requests: 5, per: second}]", "",
			[]rlFilter{{"envoy.filters.http.ratelimit", true, 0, ""}, {"envoy.filters.http.ratelimit.fail_open", false, 1, "fail_open"}},
			map[string][]rlEntry{
				"api":    {{0, "", false, false, ""}},
				"strict": {{0, "", false, false, ""}},
				// Nothing limits the anonymous tier here.
				"public": {{1, "(?:anonymous)?", true, true, "open"}, {0, "(?:anonymous)?", false, true, "closed"}},
			}},
		{"per tier, default closed", "failureMode: {default: closed, tiers: {gold: open}}", "",
			[]rlFilter{{"envoy.filters.http.ratelimit", true, 0, ""}, {"envoy.filters.http.ratelimit.fail_open", false, 1, "fail_open"}},
			map[string][]rlEntry{
				"api":    {{0, "(?:anonymous)?", true, true, "closed"}, {1, "(?:anonymous)?", false, true, "open"}},
				"strict": {{0, "(?:anonymous|gold)?", true, true, "closed"}, {1, "(?:anonymous|gold)?", false, true, "open"}},
				"public": {{1, "", false, false, ""}},
			}},
		{"default limits: the gate names the tiers of the other mode", "failureMode: {tiers: {gold.plus: closed}}\n  default: [{requests: 5, per: second}]", "",
			[]rlFilter{{"envoy.filters.http.ratelimit", false, 0, ""}, {"envoy.filters.http.ratelimit.fail_closed", true, 1, "fail_closed"}},
			map[string][]rlEntry{
				"api":    {{1, `(?:anonymous|gold\.plus)?`, true, true, "closed"}, {0, `(?:anonymous|gold\.plus)?`, false, true, "open"}},
				"strict": {{1, "", false, false, ""}},
				"public": {{1, `(?:gold\.plus)`, true, false, "closed"}, {0, `(?:gold\.plus)`, false, false, "open"}},
			}},
		{"Envoy's mode set for every tier", "", "ratelimitFailureMode: open",
			[]rlFilter{{"envoy.filters.http.ratelimit", false, 0, ""}},
			map[string][]rlEntry{"api": {{0, "", false, false, ""}}, "strict": {{0, "", false, false, ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(strings.Replace(rateLimitConfig, "FAILURE", tt.failure, 1), "SERVICES", tt.services, 1)
			res, err := translate.Translate(loadString(t, y))
			if err != nil {
				t.Fatal(err)
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := res.Listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			var filters []rlFilter
			for _, f := range hcm.GetHttpFilters() {
				rl := &ratelimitfilterv3.RateLimit{}
				if f.GetTypedConfig().UnmarshalTo(rl) != nil {
					continue
				}
				if err := rl.ValidateAll(); err != nil {
					t.Errorf("%s: %v", f.GetName(), err)
				}
				if f.GetDisabled() || rl.GetDomain() != contract.RateLimitDomain {
					t.Errorf("%s: disabled %v, domain %q; want on, in domain %q", f.GetName(), f.GetDisabled(), rl.GetDomain(), contract.RateLimitDomain)
				}
				filters = append(filters, rlFilter{f.GetName(), rl.GetFailureModeDeny(), rl.GetStage(), rl.GetStatPrefix()})
			}
			if diff := cmp.Diff(tt.filters, filters); diff != "" {
				t.Errorf("rate limit filters (-want +got):\n%s", diff)
			}
			for id, want := range tt.routes {
				r := findRoute(t, res, id)
				if err := r.ValidateAll(); err != nil {
					t.Errorf("%s: %v", id, err)
				}
				var got []rlEntry
				for _, rl := range r.GetRoute().GetRateLimits() {
					e := rlEntry{Stage: rl.GetStage().GetValue()}
					acts := rl.GetActions()
					if want := []string{"route", "tier", "subject"}; len(acts) < 3 || acts[0].GetGenericKey().GetDescriptorKey() != want[0] ||
						acts[1].GetMetadata().GetDescriptorKey() != want[1] || acts[2].GetMetadata().GetDescriptorKey() != want[2] {
						t.Errorf("%s: actions %v; want route, tier, subject first", id, acts)
					}
					if m := acts[len(acts)-1].GetHeaderValueMatch(); m != nil {
						h := m.GetHeaders()[0]
						if h.GetName() != contract.HeaderTier || m.GetDescriptorKey() != contract.DescriptorFailureMode {
							t.Errorf("%s: gate %v; want on %s, appending %s", id, m, contract.HeaderTier, contract.DescriptorFailureMode)
						}
						e.Gate, e.Expect, e.MissingIsAnonymous, e.Mode = h.GetStringMatch().GetSafeRegex().GetRegex(), m.GetExpectMatch().GetValue(), h.GetTreatMissingHeaderAsEmpty(), m.GetDescriptorValue()
					}
					got = append(got, e)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: rate limit entries (-want +got):\n%s", id, diff)
				}
			}
		})
	}
}

// TestRateLimitGate: the gate's regex, as Envoy applies it (RE2, the
// whole value), sends each tier to exactly one of a route's two entries,
// and a request without the header as the anonymous tier.
func TestRateLimitGate(t *testing.T) {
	y := strings.Replace(strings.Replace(rateLimitConfig, "FAILURE", "failureMode: {tiers: {gold.plus: closed}}\n  default: [{requests: 5, per: second}]", 1), "SERVICES", "", 1)
	res, err := translate.Translate(loadString(t, y))
	if err != nil {
		t.Fatal(err)
	}
	entries := findRoute(t, res, "api").GetRoute().GetRateLimits()
	if len(entries) != 2 {
		t.Fatalf("api has %d rate limit entries; want 2", len(entries))
	}
	for tier, want := range map[string]string{"": "closed", "anonymous": "closed", "gold.plus": "closed", "gold": "open", "goldXplus": "open", "anonymous2": "open", "xanonymous": "open"} {
		var modes []string
		for _, e := range entries {
			m := e.GetActions()[len(e.GetActions())-1].GetHeaderValueMatch()
			h := m.GetHeaders()[0]
			v, present := tier, tier != ""
			matched := false
			if present || h.GetTreatMissingHeaderAsEmpty() {
				matched = regexp.MustCompile("^(?:" + h.GetStringMatch().GetSafeRegex().GetRegex() + ")$").MatchString(v)
			}
			if matched == m.GetExpectMatch().GetValue() {
				modes = append(modes, m.GetDescriptorValue())
			}
		}
		if len(modes) != 1 || modes[0] != want {
			t.Errorf("tier %q goes to the entries of modes %v; want exactly [%s]", tier, modes, want)
		}
	}
}
