package xds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3" // the overload manager's monitor
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"                           // typed options in the bootstrap
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/gatehouse/gatehouse/cmd/gatehouse/app"
	"github.com/gatehouse/gatehouse/xds/snapshot"
)

const repo = "../.."

// TestEnvoyBootstrap: envoy/bootstrap.yaml is a valid Envoy bootstrap by
// Envoy's own proto rules, and talks ADS to gatehouse's compose address.
func TestEnvoyBootstrap(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "envoy", "bootstrap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("bootstrap.yaml: %v", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		t.Fatalf("bootstrap.yaml does not parse as envoy.config.bootstrap.v3.Bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("Bootstrap.ValidateAll() = %v", err)
	}
	// And the typed configs packed in it (ValidateAll stops at an Any).
	if err := snapshot.ValidateDeep(&bs); err != nil {
		t.Fatalf("ValidateDeep(bootstrap) = %v", err)
	}
	if bs.GetNode().GetId() == "" || bs.GetNode().GetCluster() != "edge" {
		t.Errorf("node = %v; want an id and cluster edge (examples/compose.yaml's node group)", bs.GetNode())
	}
	if a := bs.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("admin address = %q; want loopback", a)
	}
	ads := bs.GetDynamicResources().GetAdsConfig()
	if ads.GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "gatehouse.xds" {
		t.Errorf("ADS cluster = %v; want gatehouse.xds", ads.GetGrpcServices())
	}
	if bs.GetDynamicResources().GetCdsConfig().GetAds() == nil || bs.GetDynamicResources().GetLdsConfig().GetAds() == nil {
		t.Error("CDS and LDS must come over ADS")
	}
	sa := bs.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "gatehouse" || sa.GetPortValue() != 9194 {
		t.Errorf("control plane address = %s:%d; want gatehouse:9194 (examples/compose.yaml xds.address)", sa.GetAddress(), sa.GetPortValue())
	}
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := app.Main(context.Background(), args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestExamplesValidate: the configs the binary embeds and docker-compose
// serves pass every component's validation.
func TestExamplesValidate(t *testing.T) {
	for _, f := range []string{"gatehouse.yaml", "compose.yaml"} {
		out, err := run(t, "validate", filepath.Join(repo, "examples", f))
		if err != nil || !strings.HasPrefix(out, "ok: ") {
			t.Errorf("validate examples/%s = %v:\n%s", f, err, out)
		}
	}
}

// TestRender: render prints the resources, in YAML or JSON, and --diff
// shows a route change as the one route that changed.
func TestRender(t *testing.T) {
	compose := filepath.Join(repo, "examples", "compose.yaml")
	out, err := run(t, "render", compose)
	if err != nil {
		t.Fatalf("render = %v:\n%s", err, out)
	}
	for _, want := range []string{"name: listener/public", "route_config_name: routes/public", "name: gatehouse.authz", "context_extensions:"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q", want)
		}
	}
	js, err := run(t, "render", "-o", "json", compose)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string][]any
	if err := json.Unmarshal([]byte(js), &doc); err != nil || len(doc["listeners"]) != 1 {
		t.Errorf("render -o json = %v, %d listeners; want valid JSON with 1 listener", err, len(doc["listeners"]))
	}
	again, _ := run(t, "render", compose)
	if again != out {
		t.Error("render output differs between two runs of the same config")
	}

	orig, err := os.ReadFile(compose)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(changed, bytes.Replace(orig, []byte("timeout: 10s"), []byte("timeout: 20s"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	diff, err := run(t, "render", "--diff", compose, changed)
	if err != nil {
		t.Fatalf("render --diff = %v:\n%s", err, diff)
	}
	for _, want := range []string{"~ route api (#2 of virtual host *, routes/public)", "-   timeout: 10s\n    +   timeout: 20s", "0 added, 0 removed, 1 changed"} {
		if !strings.Contains(diff, want) {
			t.Errorf("render --diff output lacks %q:\n%s", want, diff)
		}
	}
	same, err := run(t, "render", "--diff", compose, compose)
	if err != nil || !strings.Contains(same, "no change") {
		t.Errorf("render --diff same same = %v, %q; want no change", err, same)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, bytes.Replace(orig, []byte("cluster: upstream\n    timeout"), []byte("cluster: upstrem\n    timeout"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := run(t, "render", bad)
	var exit *app.ExitError
	if !errors.As(err, &exit) || exit.Code != 1 || !strings.Contains(msg, `bad.yaml:`) || !strings.Contains(msg, `no cluster is named "upstrem" (did you mean "upstream"?)`) {
		t.Errorf("render bad = %v:\n%s\nwant exit 1 naming file:line and the cluster", err, msg)
	}
}
