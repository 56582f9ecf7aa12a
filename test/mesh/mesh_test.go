// Package mesh proves the contract between gatehouse's four components
// without Envoy: it takes the route configuration the control plane pushes
// over ADS, and does what Envoy does with it — calls ext_proc with the
// route name as the attribute, ext_authz with the route's context
// extensions, builds the rate limit descriptor from the route's actions and
// the dynamic metadata ext_authz returned, and calls the rate limit service
// with the filter's domain. If xds and a reader disagree on a name, a key or
// a namespace, this test fails.
package mesh

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	ratelimitfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/xds/adsclient"
)

const cfgTemplate = `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  shutdownTimeout: 2s
authz:
  address: "127.0.0.1:0"
  jwt:
    issuers:
      - name: demo
        issuer: https://demo.gatehouse.invalid
        audiences: [gatehouse-demo]
        algorithms: [RS256]
        tierClaim: plan
        tiers: [free, pro, enterprise]
        jwks: '__JWKS__'
extproc: {address: "127.0.0.1:0"}
ratelimit:
  address: "127.0.0.1:0"
  tiers:
    pro: [{requests: 3, per: minute}]
  default: [{requests: 1, per: minute}]
xds:
  address: "127.0.0.1:0"
listeners:
  - {name: public, address: 0.0.0.0:10000}
clusters:
  - {name: app, endpoints: [{address: 127.0.0.1:8000}]}
routes:
  - id: orders
    match: {prefix: /api/orders}
    cluster: app
    authz: {jwt: {issuers: [demo]}}
    extproc: {hygiene: {}}
  - id: home
    match: {prefix: /}
    cluster: app
    authz: {public: true}
    ratelimit: {disabled: true}
`

// demoJWKS is the public key of examples/demo's issuer, copied from the
// example config so that this test exercises the same demo token.
func demoJWKS(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "jwks: '"); ok {
			return strings.TrimSuffix(v, "'")
		}
	}
	t.Fatal("no inline jwks in examples/gatehouse.yaml")
	return ""
}

// fetch subscribes to typ (with names) and returns the first response,
// acknowledged as Envoy would.
func fetch(t *testing.T, s *adsclient.SotW, typ string, names ...string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	if err := s.Request(typ, names...); err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("ADS Recv(%s): %v", typ, err)
		}
		if err := s.Ack(resp, names...); err != nil {
			t.Fatal(err)
		}
		if resp.GetTypeUrl() == typ {
			return resp
		}
	}
}

func unpack[T proto.Message](t *testing.T, a *anypb.Any, m T) T {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

func TestEnvoyContractAcrossComponents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(cfgTemplate, "__JWKS__", demoJWKS(t), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rt, err := app.Start(ctx, app.Options{ConfigPath: path, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- rt.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}()

	// 1. What Envoy receives.
	ads, err := adsclient.NewSotW(ctx, testenv.Dial(t, rt.Addr("xds")), &corev3.Node{Id: "envoy-1", Cluster: "edge", UserAgentName: "envoy"})
	if err != nil {
		t.Fatal(err)
	}
	fetch(t, ads, resourcev3.ClusterType)
	lds := fetch(t, ads, resourcev3.ListenerType)
	if len(lds.GetResources()) != 1 {
		t.Fatalf("listeners = %d; want 1", len(lds.GetResources()))
	}
	lis := unpack(t, lds.GetResources()[0], &listenerv3.Listener{})
	hcm := unpack(t, lis.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	var order []string
	var domain string
	for _, f := range hcm.GetHttpFilters() {
		order = append(order, f.GetName())
		if f.GetName() == "envoy.filters.http.ratelimit" {
			domain = unpack(t, f.GetTypedConfig(), &ratelimitfilterv3.RateLimit{}).GetDomain()
		}
	}
	// header_mutation strips client-sent identity headers and the rate
	// limiter's mark; ext_proc's hygiene stage runs before ext_authz, its
	// contract/idempotency stage after ext_authz and the rate limit; the
	// second rate limit filter fails closed, for the anonymous tier
	// (verified tiers fail open by default).
	if got := strings.Join(order, ","); got != "envoy.filters.http.header_mutation,envoy.filters.http.ext_proc.pre_authz,envoy.filters.http.ext_authz,envoy.filters.http.ratelimit,envoy.filters.http.ratelimit.fail_closed,envoy.filters.http.ext_proc.post_authz,envoy.filters.http.router" {
		t.Fatalf("filter chain = %s; want header_mutation, ext_proc pre_authz, ext_authz, ratelimit (and its fail_closed twin), ext_proc post_authz, router", got)
	}
	rds := fetch(t, ads, resourcev3.RouteType, hcm.GetRds().GetRouteConfigName())
	rc := unpack(t, rds.GetResources()[0], &routev3.RouteConfiguration{})
	var orders *routev3.Route
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() == "orders" {
				orders = r
			}
		}
	}
	if orders == nil {
		t.Fatalf("no Envoy route named orders in %v", rc)
	}

	// 2. ext_proc: Envoy sends the route name it was asked for. The
	// route turns on the stage(s) its processors run in.
	var extprocOn bool
	for _, stage := range []string{"envoy.filters.http.ext_proc.pre_authz", "envoy.filters.http.ext_proc.post_authz"} {
		if cfg, ok := orders.GetTypedPerFilterConfig()[stage]; ok {
			per := unpack(t, cfg, &extprocfilterv3.ExtProcPerRoute{})
			extprocOn = extprocOn || per.GetOverrides() != nil
		}
	}
	if !extprocOn {
		t.Fatal("the orders route does not turn ext_proc on")
	}
	ep, err := extprocv3.NewExternalProcessorClient(testenv.Dial(t, rt.Addr("extproc"))).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = ep.Send(&extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/api/orders/1")},
				{Key: ":authority", RawValue: []byte("shop.example")}, {Key: "x-gatehouse-tier", RawValue: []byte("enterprise")},
			}},
			EndOfStream: true,
		}},
		Attributes: map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{
			"xds.route_name": structpb.NewStringValue(orders.GetName()),
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := ep.Recv()
	if err != nil {
		t.Fatal(err)
	}
	removed := pr.GetRequestHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders()
	if !strings.Contains(strings.Join(removed, ","), "x-gatehouse-tier") {
		t.Errorf("ext_proc on route %q did not strip the spoofed tier header (removed %v): the route name did not select the route's processors", orders.GetName(), removed)
	}
	_ = ep.CloseSend()

	// 3. ext_authz with the route's context extensions.
	per := unpack(t, orders.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"], &extauthzv3.ExtAuthzPerRoute{})
	token, err := os.ReadFile("../../examples/demo/demo-token.jwt")
	if err != nil {
		t.Fatal(err)
	}
	check := func(headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := authv3.NewAuthorizationClient(testenv.Dial(t, rt.Addr("authz"))).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: per.GetCheckSettings().GetContextExtensions(),
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/orders/1", Host: "shop.example", Headers: headers,
			}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	allowed := check(map[string]string{":path": "/api/orders/1", ":method": "GET", ":authority": "shop.example", "authorization": "Bearer " + strings.TrimSpace(string(token))})
	if allowed.GetStatus().GetCode() != 0 {
		t.Fatalf("Check(demo token) = %v; want allowed", allowed)
	}
	if denied := check(map[string]string{":path": "/api/orders/1", ":method": "GET", ":authority": "shop.example"}); denied.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("Check(no credentials) = %v; want 401", denied)
	}

	// 4. The rate limit descriptor, built as Envoy builds it from the
	// route's actions, the metadata ext_authz emitted under its name and
	// the tier header it set: of the route's entries (one per failure
	// mode), the one whose gate the tier passes makes the descriptor.
	meta := map[string]*structpb.Struct{"envoy.filters.http.ext_authz": allowed.GetDynamicMetadata()}
	upstream := map[string]string{}
	for _, h := range allowed.GetOkResponse().GetHeaders() {
		upstream[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	var descs []*ratelimitv3.RateLimitDescriptor
	var stages []uint32
entries:
	for _, rl := range orders.GetRoute().GetRateLimits() {
		d := &ratelimitv3.RateLimitDescriptor{}
		for _, a := range rl.GetActions() {
			switch {
			case a.GetHeaderValueMatch() != nil:
				m := a.GetHeaderValueMatch()
				h := m.GetHeaders()[0]
				v, ok := upstream[h.GetName()]
				matched := (ok || h.GetTreatMissingHeaderAsEmpty()) && regexp.MustCompile("^(?:"+h.GetStringMatch().GetSafeRegex().GetRegex()+")$").MatchString(v)
				if matched != m.GetExpectMatch().GetValue() {
					continue entries
				}
				d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: m.GetDescriptorKey(), Value: m.GetDescriptorValue()})
			case a.GetGenericKey() != nil:
				d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: a.GetGenericKey().GetDescriptorKey(), Value: a.GetGenericKey().GetDescriptorValue()})
			case a.GetMetadata() != nil:
				m := a.GetMetadata()
				v := m.GetDefaultValue()
				ns := meta[m.GetMetadataKey().GetKey()]
				if f, ok := ns.GetFields()[m.GetMetadataKey().GetPath()[0].GetKey()]; ok {
					v = f.GetStringValue()
				}
				d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: m.GetDescriptorKey(), Value: v})
			default:
				t.Fatalf("unexpected rate limit action %v", a)
			}
		}
		descs = append(descs, d)
		stages = append(stages, rl.GetStage().GetValue())
	}
	if len(descs) != 1 || stages[0] != 0 {
		t.Fatalf("descriptors %v in stages %v; want one, for the first (fail-open) rate limit filter", descs, stages)
	}
	got := map[string]string{}
	for _, e := range descs[0].GetEntries() {
		got[e.GetKey()] = e.GetValue()
	}
	if got["route"] != "orders" || got["tier"] != "pro" || got["subject"] != "demo-user" || got["failure_mode"] != "open" {
		t.Fatalf("descriptor = %v; want route orders, the token's tier pro, subject demo-user and failure_mode open", got)
	}
	rls := rlsv3.NewRateLimitServiceClient(testenv.Dial(t, rt.Addr("ratelimit")))
	var codes []string
	for range 4 {
		resp, err := rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: descs, HitsAddend: 1})
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.GetOverallCode().String())
	}
	if want := "OK,OK,OK,OVER_LIMIT"; strings.Join(codes, ",") != want {
		t.Errorf("ShouldRateLimit x4 = %v; want %s (tier pro: 3 a minute)", codes, want)
	}

	// 5. The public route has neither ext_authz nor a rate limit.
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetName() != "home" {
				continue
			}
			if len(r.GetRoute().GetRateLimits()) != 0 {
				t.Errorf("route home has rate limits %v; its ratelimit is disabled", r.GetRoute().GetRateLimits())
			}
			if c, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; !ok || !unpack(t, c, &extauthzv3.ExtAuthzPerRoute{}).GetDisabled() {
				t.Errorf("route home does not disable ext_authz")
			}
		}
	}
}
