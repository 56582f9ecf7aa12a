package ratelimit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestCompatServesReferenceDeployment proves that a container started with
// the reference's environment and runtime directory serves its config
// unchanged: the gatehouse binary (`gatehouse ratelimit-compat`) and the
// reference binary get the same environment variables (a Kubernetes-style
// Deployment: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY with the config files as a
// ConfigMap mount, headers, metadata and Prometheus on) and each its own
// redis-server (gatehouse's over a Unix socket, REDIS_SOCKET_TYPE=unix).
// They answer the same requests alike over gRPC and /json, print the same
// /rlconfig, report healthy on /healthcheck, follow a ConfigMap ..data
// swap alike, and count the same hits under the same Prometheus names.
func TestCompatServesReferenceDeployment(t *testing.T) {
	refBin, ghBin := binaries(t)
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	swap := testenv.ConfigMap(t, dir)
	swap(map[string]string{"shop.yaml": readFile(t, "testdata/envoy/shop.yaml"), "mongo.yaml": readFile(t, "testdata/envoy/mongo.yaml")})

	refRedis, ghRedis := testenv.StartRedis(t), testenv.StartRedis(t)
	extra := map[string]string{
		"LIMIT_RESPONSE_HEADERS_ENABLED": "true", "RESPONSE_DYNAMIC_METADATA": "true",
		"DISABLE_STATS": "false", "USE_PROMETHEUS": "true", "STATS_FLUSH_INTERVAL": "500ms",
	}
	refE := refEnv(t, refRedis.Addr(), root, "ratelimit")
	ghE := refEnv(t, ghRedis.Socket(), root, "ratelimit")
	ghE["REDIS_SOCKET_TYPE"] = "unix"
	for k, v := range extra {
		refE[k], ghE[k] = v, v
	}
	refE["PROMETHEUS_ADDR"], ghE["PROMETHEUS_ADDR"] = testenv.FreeAddr(t), testenv.FreeAddr(t)
	ref := startService(t, "reference", refBin, nil, refE)
	gh := startService(t, "gatehouse", ghBin, []string{"ratelimit-compat"}, ghE)
	refRDB := redis.NewClient(&redis.Options{Addr: refRedis.Addr()})
	ghRDB := redis.NewClient(&redis.Options{Addr: ghRedis.Addr()})
	t.Cleanup(func() { refRDB.Close(); ghRDB.Close() })

	for _, s := range []*service{ref, gh} {
		if code, body := get(t, s.http, "/healthcheck"); code != 200 || body != "OK" {
			t.Errorf("%s /healthcheck = %d %q; want 200 OK", s.name, code, body)
		}
	}
	if w, g := rlconfigLines(t, ref), rlconfigLines(t, gh); !cmp.Equal(w, g) {
		t.Errorf("/rlconfig differs (-reference +gatehouse):\n%s", cmp.Diff(w, g))
	}
	runCase(t, "testdata/envoy", "testdata/envoy/*.yaml", sideBySideRequests(), ref.client, gh.client, refRDB, ghRDB)

	// /json: the same answer as JSON, 429 when over the limit.
	body := `{"domain":"shop","descriptors":[{"entries":[{"key":"user","value":"json"}]}],"hitsAddend":5}`
	rc, rb := post(t, ref.http, "/json", body)
	gc, gb := post(t, gh.http, "/json", body)
	if rc != 429 || gc != rc {
		t.Errorf("/json over the limit: reference %d, gatehouse %d; want 429 from both", rc, gc)
	}
	if w, g := jsonAnswer(t, rb), jsonAnswer(t, gb); !cmp.Equal(w, g, protocmp.Transform()) {
		t.Errorf("/json answers differ (-reference +gatehouse):\n%s", cmp.Diff(w, g, protocmp.Transform()))
	}

	// A ConfigMap update: the kubelet swaps ..data to a new directory.
	swap(map[string]string{
		"shop.yaml":  strings.Replace(readFile(t, "testdata/envoy/shop.yaml"), "requests_per_unit: 3, name: per_user", "requests_per_unit: 1, name: per_user", 1),
		"mongo.yaml": readFile(t, "testdata/envoy/mongo.yaml"),
		"added.yaml": "domain: added\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n",
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(strings.Join(rlconfigLines(t, ref), ""), "added.k") || !strings.Contains(strings.Join(rlconfigLines(t, gh), ""), "added.k") {
		if time.Now().After(deadline) {
			t.Fatalf("the ConfigMap swap was not applied:\nreference %v\ngatehouse %v", rlconfigLines(t, ref), rlconfigLines(t, gh))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w, g := rlconfigLines(t, ref), rlconfigLines(t, gh); !cmp.Equal(w, g) {
		t.Errorf("/rlconfig after the swap differs (-reference +gatehouse):\n%s", cmp.Diff(w, g))
	}
	after := append(sideBySideRequests(), request("added", "k", "v"), request("added", "k", "v"))
	runCase(t, "after the ConfigMap swap", "the swapped ConfigMap", after, ref.client, gh.client, refRDB, ghRDB)

	// The reference's per-rule counters, under the same names and labels.
	deadline = time.Now().Add(20 * time.Second)
	for {
		w, g := refCounters(t, refE["PROMETHEUS_ADDR"]), refCounters(t, ghE["PROMETHEUS_ADDR"])
		if len(w) > 0 && cmp.Equal(w, g) {
			t.Logf("%d per-rule series counted alike", len(w))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("per-rule counters differ (-reference +gatehouse):\n%s", cmp.Diff(w, g))
		}
		time.Sleep(250 * time.Millisecond)
	}

	if err := gh.stop(t); err != nil {
		t.Errorf("gatehouse exited with %v on SIGTERM; want 0", err)
	}
}

// TestCompatConfigMapWithDotFiles: with RUNTIME_IGNOREDOTFILES=false (the
// reference's default) a ConfigMap mount's ..data directory holds every
// file a second time; the reference then fails to load its config and
// answers every request with an error, gatehouse serves it.
func TestCompatConfigMapWithDotFiles(t *testing.T) {
	refBin, ghBin := binaries(t)
	root := t.TempDir()
	swap := testenv.ConfigMap(t, filepath.Join(root, "ratelimit", "config"))
	swap(map[string]string{"mongo.yaml": readFile(t, "testdata/envoy/mongo.yaml")})
	srv := testenv.StartRedis(t)
	env := refEnv(t, srv.Addr(), root, "ratelimit")
	env["RUNTIME_IGNOREDOTFILES"] = "false"
	gh := startService(t, "gatehouse", ghBin, []string{"ratelimit-compat"}, env)
	req := &rlsv3.RateLimitRequest{Domain: "mongo_cps", Descriptors: request("x", "database", "default").Descriptors}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp, err := ask(context.Background(), gh.client, req)
		if err != nil || resp.GetOverallCode() != want {
			t.Fatalf("gatehouse request %d = %v, %v; want %v (2/minute)", i, resp.GetOverallCode(), err, want)
		}
	}
	gh.stop(t)

	// The reference, same environment: its config never loads.
	refEnv := refEnv(t, srv.Addr(), root, "ratelimit")
	refEnv["RUNTIME_IGNOREDOTFILES"] = "false"
	ref := startService(t, "reference", refBin, nil, refEnv)
	_, err := ask(context.Background(), ref.client, req)
	if err == nil || !strings.Contains(err.Error(), "no rate limit configuration loaded") {
		t.Errorf("the reference with dot files read = %v; want its error \"no rate limit configuration loaded\" (this test documents why gatehouse skips ..data)", err)
	}
}

// binaries returns the reference's binary and gatehouse's.
func binaries(t *testing.T) (ref, gatehouse string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the reference and gatehouse binaries")
	}
	gh, err := gatehouseBinary()
	if err != nil {
		t.Fatalf("build gatehouse: %v", err)
	}
	return referenceBinary(t), gh
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rlconfigLines is a server's /rlconfig, sorted (the reference's order
// follows Go's map iteration).
func rlconfigLines(t *testing.T, s *service) []string {
	t.Helper()
	_, body := get(t, s.debug, "/rlconfig")
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

// jsonAnswer decodes a /json answer, without durations: the two answers
// may be a second apart.
func jsonAnswer(t *testing.T, body string) *rlsv3.RateLimitResponse {
	t.Helper()
	var r rlsv3.RateLimitResponse
	if err := protojson.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/json answer %q: %v", body, err)
	}
	for _, s := range r.Statuses {
		s.DurationUntilReset = nil
	}
	r.ResponseHeadersToAdd = nil
	return &r
}

// refCounters scrapes the reference's per-rule counters at addr: every
// non-zero sample of ratelimit_service_rate_limit_*, by name and labels.
func refCounters(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	_, body := get(t, addr, "/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "ratelimit_service_rate_limit_") {
			continue
		}
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			if v == 0 {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			out[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}
