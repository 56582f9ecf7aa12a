package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// testConfig is a config with every component on an ephemeral port.
const testConfig = `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  shutdownTimeout: 2s
  drainDelay: 0s
  reloadDebounce: 50ms
audit: {stdout: true}
authz: {address: "127.0.0.1:0"}
extproc: {address: "127.0.0.1:0"}
ratelimit: {address: "127.0.0.1:0"}
xds: {address: "127.0.0.1:0"}
routes:
  - id: hello
    match: {prefix: /}
`

// syncBuffer is a goroutine-safe buffer for logs written by the runtime.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	rt     *Runtime
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
	audit  *syncBuffer
}

// start runs a Runtime on cfgPath until the test ends.
func start(t *testing.T, o Options) *running {
	t.Helper()
	logs, auditOut := &syncBuffer{}, &syncBuffer{}
	o.Stderr, o.Stdout = logs, auditOut
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := Start(ctx, o)
	if err != nil {
		cancel()
		t.Fatalf("Start() = %v", err)
	}
	r := &running{rt: rt, cancel: cancel, done: make(chan error, 1), logs: logs, audit: auditOut}
	go func() { r.done <- rt.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run() = %v", err)
		}
		r.done <- nil // later stops return at once
	case <-time.After(20 * time.Second):
		t.Fatal("Run() did not return 20s after cancel")
	}
}

func writeConfig(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "gatehouse.yaml")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	// Replace by rename, as editors and ConfigMaps do.
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 20ms for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeAllComponents(t *testing.T) {
	path := writeConfig(t, t.TempDir(), testConfig)
	r := start(t, Options{ConfigPath: path})
	admin := "http://" + r.rt.AdminAddr()

	if code, body := httpGet(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q; want 200 ok", code, body)
	}
	eventually(t, "/readyz to be 200", func() bool {
		code, _ := httpGet(t, admin+"/readyz")
		return code == 200
	})
	code, body := httpGet(t, admin+"/config")
	if code != 200 || !strings.Contains(body, "apiVersion: gatehouse/v1") || !strings.Contains(body, "id: hello") {
		t.Errorf("GET /config = %d:\n%s\nwant the effective config", code, body)
	}
	code, body = httpGet(t, admin+"/config?format=json")
	var asJSON map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &asJSON) != nil || asJSON["apiVersion"] != "gatehouse/v1" {
		t.Errorf("GET /config?format=json = %d %q; want JSON with apiVersion", code, body)
	}
	if _, body := httpGet(t, admin+"/metrics"); !strings.Contains(body, "gatehouse_build_info{") || !strings.Contains(body, `gatehouse_component_serving{component="authz"} 1`) {
		t.Errorf("GET /metrics lacks build info or component_serving:\n%.2000s", body)
	}

	wantServices := map[string]string{
		config.ComponentAuthz:     "envoy.service.auth.v3.Authorization",
		config.ComponentExtProc:   "envoy.service.ext_proc.v3.ExternalProcessor",
		config.ComponentRateLimit: "envoy.service.ratelimit.v3.RateLimitService",
		config.ComponentXDS:       "envoy.service.discovery.v3.AggregatedDiscoveryService",
	}
	for comp, svc := range wantServices {
		cc := testenv.Dial(t, r.rt.Addr(comp))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("%s: health Check(%s) = %v, %v; want SERVING", comp, svc, resp, err)
		}
		// Reflection is on, so grpcurl can list and call the service.
		stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatalf("%s: reflection: %v", comp, err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatalf("%s: reflection send: %v", comp, err)
		}
		lr, err := stream.Recv()
		if err != nil {
			t.Fatalf("%s: reflection recv: %v", comp, err)
		}
		var names []string
		for _, s := range lr.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), svc) {
			t.Errorf("%s: reflection lists %v; want %s", comp, names, svc)
		}
		cancel()
	}
	if !strings.Contains(r.logs.String(), "run a single replica") {
		t.Errorf("logs do not say the in-process store means one replica:\n%s", r.logs.String())
	}
	if !strings.Contains(r.audit.String(), `"kind":"audit.start"`) {
		t.Errorf("audit stream lacks the start line:\n%s", r.audit.String())
	}
}

func TestDrainClosesReadinessAndStops(t *testing.T) {
	path := writeConfig(t, t.TempDir(), strings.Replace(testConfig, "shutdownTimeout: 2s", "shutdownTimeout: 500ms", 1))
	r := start(t, Options{ConfigPath: path})
	cc := testenv.Dial(t, r.rt.Addr(config.ComponentAuthz))
	// A watch stream stays open: the drain must not wait for it beyond
	// shutdownTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatalf("Watch first answer: %v", err)
	}
	r.stop(t)
	// The stream sees NOT_SERVING or its end.
	for {
		resp, err := watch.Recv()
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	if !strings.Contains(r.logs.String(), "draining") || !strings.Contains(r.logs.String(), `msg=stopped`) && !strings.Contains(r.logs.String(), `"msg":"stopped"`) {
		t.Errorf("logs lack the drain:\n%s", r.logs.String())
	}
}

// An ADS stream never ends by itself: the drain must end it (Envoy then
// reconnects to another replica) instead of holding every SIGTERM until
// shutdownTimeout and then cutting the connection.
func TestDrainEndsADSStreams(t *testing.T) {
	path := writeConfig(t, t.TempDir(), strings.Replace(testConfig, "shutdownTimeout: 2s", "shutdownTimeout: 15s", 1))
	r := start(t, Options{ConfigPath: path})
	cc := testenv.Dial(t, r.rt.Addr(config.ComponentXDS))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "drain-test", Cluster: "mesh"}
	if err := ads.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := ads.Recv(); err != nil {
		t.Fatalf("first ADS answer: %v", err)
	}
	r.stop(t)
	for {
		if _, err := ads.Recv(); err != nil {
			break
		}
	}
	if logs := r.logs.String(); strings.Contains(logs, "drain deadline reached") {
		t.Errorf("the drain waited out shutdownTimeout for the ADS stream:\n%s", logs)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, testConfig)
	r := start(t, Options{ConfigPath: path})
	<-r.rt.watching
	v0 := r.rt.Config().Version

	// A valid change made on disk is picked up by the watcher.
	writeConfig(t, dir, testConfig+"  - id: second\n    match: {prefix: /second}\n")
	eventually(t, "the watcher to apply the new config", func() bool { return r.rt.Config().Version != v0 })
	if r.rt.Config().RouteByID("second") == nil {
		t.Fatal("reloaded config lacks the new route")
	}
	v1 := r.rt.Config().Version

	// An invalid change is rejected; the last good config keeps serving.
	writeConfig(t, dir, testConfig+"  - id: Bad Id\n")
	res, err := r.rt.Reload("test")
	if res != ReloadRejected || err == nil || !strings.Contains(err.Error(), `gatehouse.yaml:15: routes[1].id: "Bad Id" is not a route id`) {
		t.Fatalf("Reload(invalid) = %v, %v; want rejected with file:line", res, err)
	}
	if got := r.rt.Config().Version; got != v1 {
		t.Fatalf("serving version after a rejected reload = %s; want %s", got, v1)
	}
	if got := testutil.ToFloat64(r.rt.metrics.reloads.WithLabelValues("rejected")); got < 1 {
		t.Errorf("gatehouse_config_reloads_total{result=rejected} = %v; want >= 1", got)
	}

	// A restart-only change is rejected as a whole.
	writeConfig(t, dir, strings.Replace(testConfig, `authz: {address: "127.0.0.1:0"}`, `authz: {address: "127.0.0.1:1"}`, 1))
	res, err = r.rt.Reload("test")
	if res != ReloadRejected || err == nil || !strings.Contains(err.Error(), "authz.address: changed from 127.0.0.1:0 to 127.0.0.1:1, but listeners move only on restart") {
		t.Fatalf("Reload(address change) = %v, %v; want rejected naming authz.address", res, err)
	}

	// Restoring the served content is a no-op.
	writeConfig(t, dir, testConfig+"  - id: second\n    match: {prefix: /second}\n")
	if res, err := r.rt.Reload("test"); res != ReloadUnchanged || err != nil {
		t.Fatalf("Reload(same) = %v, %v; want unchanged", res, err)
	}
	eventually(t, "the audit lines of the change and the rejection", func() bool {
		a := r.audit.String()
		return strings.Contains(a, `"kind":"config.change"`) && strings.Contains(a, `"kind":"config.reject"`)
	})
}

func TestReloadOnReferencedFile(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "orders.yaml")
	doc := "openapi: 3.0.3\ninfo: {title: orders, version: \"1\"}\npaths:\n  /orders: {get: {responses: {\"200\": {description: ok}}}}\n"
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig + "  - id: orders\n    match: {prefix: /orders}\n    extproc: {openapi: {file: orders.yaml, requestBody: false}}\n"
	r := start(t, Options{ConfigPath: writeConfig(t, dir, cfg)})
	<-r.rt.watching
	v0 := r.rt.Config().Version
	if err := os.WriteFile(spec, []byte(strings.Replace(doc, "title: orders", "title: orders-v2", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an edit of the OpenAPI document to reload the config", func() bool { return r.rt.Config().Version != v0 })

	// A broken document is rejected and the last good one keeps serving.
	v1 := r.rt.Config().Version
	if err := os.WriteFile(spec, []byte("openapi: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.rt.Reload("test")
	if res != ReloadRejected || err == nil {
		t.Fatalf("Reload(broken document) = %v, %v; want rejected", res, err)
	}
	if r.rt.Config().Version != v1 {
		t.Fatal("a rejected document replaced the serving config")
	}
}

func TestPortInUse(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	// authz and extproc listen before ratelimit (the builders' order), on
	// fixed ports so that their release can be checked.
	authzAddr, extprocAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := strings.NewReplacer(
		`authz: {address: "127.0.0.1:0"}`, fmt.Sprintf("authz: {address: %q}", authzAddr),
		`extproc: {address: "127.0.0.1:0"}`, fmt.Sprintf("extproc: {address: %q}", extprocAddr),
		`ratelimit: {address: "127.0.0.1:0"}`, fmt.Sprintf("ratelimit: {address: %q}", lis.Addr()),
	).Replace(testConfig)
	path := writeConfig(t, t.TempDir(), cfg)
	_, err = Start(context.Background(), Options{ConfigPath: path, Stdout: io.Discard, Stderr: io.Discard})
	want := fmt.Sprintf("ratelimit: cannot listen on %s: the address is already in use", lis.Addr())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Start() = %v; want %q", err, want)
	}
	// Nothing was left listening: the ports opened before the failure are free.
	for _, addr := range []string{authzAddr, extprocAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("after a failed Start, %s is still held: %v", addr, err)
			continue
		}
		l.Close()
	}
}

func TestRedisUnreachableAtStart(t *testing.T) {
	redisProc := testenv.StartRedis(t)
	redisProc.Stop() // its port is now dead
	cfg := testConfig + "redis:\n  addresses: [\"" + redisProc.Addr() + "\"]\n  dialTimeout: 200ms\n"
	r := start(t, Options{ConfigPath: writeConfig(t, t.TempDir(), cfg)})
	admin := "http://" + r.rt.AdminAddr()
	code, body := httpGet(t, admin+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"redis"`) {
		t.Fatalf("GET /readyz with redis down = %d %s; want 503 naming redis", code, body)
	}
	if !strings.Contains(r.logs.String(), "redis is unreachable at start") {
		t.Errorf("logs lack the unreachable-redis warning:\n%s", r.logs.String())
	}
	redisProc.Start()
	eventually(t, "/readyz to recover once redis answers", func() bool {
		code, _ := httpGet(t, admin+"/readyz")
		return code == 200
	})
}

// TestBadInputMessages runs the command line on each kind of bad input: one
// clear message naming the cause (and file:line), never a panic.
func TestBadInputMessages(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"malformed.yaml": "apiVersion: gatehouse/v1\nserver: [\n",
		"type.yaml":      "apiVersion: gatehouse/v1\nserver:\n  shutdownTimeout: [1]\n",
		"unknown.yaml":   "apiVersion: gatehouse/v1\nserver:\n  colour: red\n",
		"secret.yaml":    "apiVersion: gatehouse/v1\nredis:\n  addresses: [\"127.0.0.1:6379\"]\n  password: env:GATEHOUSE_TEST_UNSET_SECRET\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"validate", filepath.Join(dir, "malformed.yaml")}, "malformed.yaml:2: invalid YAML"},
		{[]string{"validate", filepath.Join(dir, "type.yaml")}, "type.yaml:3: server.shutdownTimeout: expected a duration"},
		{[]string{"validate", filepath.Join(dir, "unknown.yaml")}, `unknown.yaml:3: server.colour: unknown field "colour"`},
		{[]string{"validate", filepath.Join(dir, "secret.yaml")}, "secret.yaml:4: redis.password: secret env:GATEHOUSE_TEST_UNSET_SECRET: environment variable GATEHOUSE_TEST_UNSET_SECRET is not set"},
		{[]string{"serve", "--config", filepath.Join(dir, "unknown.yaml")}, `invalid config (1 problem):`},
		{[]string{"serve", "--config", filepath.Join(dir, "absent.yaml")}, "absent.yaml: no such file or directory"},
		{[]string{"serve", "--log-format", "xml"}, `"xml" is not a log format; use json|text`},
		{[]string{"serve", "--components", "authz,nope"}, `unknown component "nope"`},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := Main(context.Background(), tt.args, &out, &errOut)
		got := out.String() + errOut.String()
		if err != nil {
			got += err.Error()
		}
		if err == nil {
			t.Errorf("Main(%q) = nil; want an error", tt.args)
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("Main(%q) printed %q; want it to contain %q", tt.args, got, tt.want)
		}
		if strings.Contains(got, "goroutine ") || strings.Contains(got, "panic") {
			t.Errorf("Main(%q) printed a stack trace:\n%s", tt.args, got)
		}
	}
}

func TestValidateCommand(t *testing.T) {
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"validate", "../../../examples/gatehouse.yaml"}, &out, io.Discard); err != nil {
		t.Fatalf("validate examples/gatehouse.yaml = %v\n%s", err, out.String())
	}
	if !strings.HasPrefix(out.String(), "ok: ../../../examples/gatehouse.yaml: 1 file,") {
		t.Errorf("validate printed %q; want a one-line ok summary", out.String())
	}
	out.Reset()
	// The embedded default is the same file.
	if err := Main(context.Background(), []string{"validate"}, &out, io.Discard); err != nil {
		t.Fatalf("validate (embedded) = %v\n%s", err, out.String())
	}
	out.Reset()
	err := Main(context.Background(), []string{"validate", "../../../internal/config/testdata/golden/broken.yaml"}, &out, io.Discard)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("validate broken.yaml = %v; want exit status 1", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 10 || !strings.HasPrefix(lines[0], "../../../internal/config/testdata/golden/broken.yaml:3: ") || !strings.HasSuffix(lines[len(lines)-1], " errors") {
		t.Errorf("validate broken.yaml printed:\n%s\nwant every error with file:line, then a count", out.String())
	}
}

func TestComponentsFlag(t *testing.T) {
	r := start(t, Options{ConfigPath: writeConfig(t, t.TempDir(), testConfig), Components: []string{"ratelimit"}})
	if r.rt.Addr(config.ComponentRateLimit) == "" || r.rt.Addr(config.ComponentAuthz) != "" {
		t.Errorf("serving authz=%q ratelimit=%q; want ratelimit only", r.rt.Addr(config.ComponentAuthz), r.rt.Addr(config.ComponentRateLimit))
	}
	noXDS := strings.Replace(testConfig, "xds: {address: \"127.0.0.1:0\"}\n", "", 1)
	_, err := Start(context.Background(), Options{ConfigPath: writeConfig(t, t.TempDir(), noXDS), Components: []string{"xds"}, Stdout: io.Discard, Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "component xds is not configured") {
		t.Errorf("Start(--components xds without xds:) = %v; want not configured", err)
	}
}

func TestConfigDefaultsCommand(t *testing.T) {
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"config", "defaults"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shutdownTimeout: 15s", "maxRecvMessageSize: 4MiB", "address: 127.0.0.1:9191", "keyPrefix: 'gh:'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("config defaults lacks %q:\n%s", want, out.String())
		}
	}
}

// TestReloadLogFormatNeedsRestart: the logger is built once, so a reload
// that changes server.log.format must be refused (as listeners are), not
// reported as applied while the process keeps its old format.
func TestReloadLogFormatNeedsRestart(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, testConfig)
	r := start(t, Options{ConfigPath: path})
	v0 := r.rt.Config().Version
	writeConfig(t, dir, strings.Replace(testConfig, "server:\n", "server:\n  log: {format: text}\n", 1))
	res, err := r.rt.Reload("test")
	if res != ReloadRejected || err == nil || !strings.Contains(err.Error(), "server.log.format: changed, but takes effect only on restart") {
		t.Fatalf("Reload(log format change) = %v, %v; want rejected naming server.log.format", res, err)
	}
	if got := r.rt.Config().Version; got != v0 {
		t.Fatalf("serving version = %s; want %s kept", got, v0)
	}

	// With --log-format the file's format serves nothing: it may change.
	path2 := writeConfig(t, t.TempDir(), testConfig)
	r2 := start(t, Options{ConfigPath: path2, LogFormat: config.LogJSON})
	writeConfig(t, filepath.Dir(path2), strings.Replace(testConfig, "server:\n", "server:\n  log: {format: text}\n", 1))
	// The watcher may apply the change first; then this reload is a no-op.
	if res, err := r2.rt.Reload("test"); res == ReloadRejected || err != nil {
		t.Fatalf("Reload(log format change under --log-format) = %v, %v; want applied", res, err)
	}
	if got := r2.rt.Config().Server.Log.Format; got != config.LogText {
		t.Fatalf("server.log.format after reload = %q; want text", got)
	}
}

// TestReloadRotatedStartOnlySecret: the audit writer keeps the chain key it
// started with, so a reload that only rotates the key's value must say a
// restart is needed rather than report the rotation applied.
func TestReloadRotatedStartOnlySecret(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "chain.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("a", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfig(t, dir, strings.Replace(testConfig, "audit: {stdout: true}", "audit: {stdout: true, chainKey: \"file:chain.key\"}", 1))
	r := start(t, Options{ConfigPath: path})
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("b", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := r.rt.Reload("test")
	if res != ReloadRejected || err == nil || !strings.Contains(err.Error(), "audit.chainKey: secret value rotated") {
		t.Fatalf("Reload(rotated chainKey) = %v, %v; want rejected naming audit.chainKey", res, err)
	}
	if strings.Contains(err.Error(), strings.Repeat("b", 16)) || strings.Contains(r.logs.String(), strings.Repeat("b", 16)) {
		t.Fatal("the rotated key's value appears in the error or the logs")
	}
}

// TestReloadDebounceChangesLive: server.reloadDebounce is not restart-only,
// so a reload that shortens it must govern the next file change.
func TestReloadDebounceChangesLive(t *testing.T) {
	dir := t.TempDir()
	slow := strings.Replace(testConfig, "reloadDebounce: 50ms", "reloadDebounce: 1h", 1)
	r := start(t, Options{ConfigPath: writeConfig(t, dir, slow)})
	<-r.rt.watching
	// Applied by SIGHUP's path, not by the (hour-long) file debounce.
	writeConfig(t, dir, testConfig)
	if res, err := r.rt.Reload("test"); res != ReloadApplied || err != nil {
		t.Fatalf("Reload(debounce 50ms) = %v, %v; want applied", res, err)
	}
	v1 := r.rt.Config().Version
	writeConfig(t, dir, testConfig+"  - id: second\n    match: {prefix: /second}\n")
	eventually(t, "the watcher to apply a change with the new 50ms debounce", func() bool { return r.rt.Config().Version != v1 })
}
