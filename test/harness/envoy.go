package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	envoyboot "github.com/gatehouse/gatehouse/envoy"
	"github.com/gatehouse/gatehouse/internal/testenv"
)

// EnvEnvoyLog sets the log level of Envoy's gatehouse-facing components
// (ext_authz, ext_proc, rate limit, router, upstream, config) when debugging
// a test, e.g. GATEHOUSE_E2E_ENVOY_LOG=debug; the logs are in the test's
// temporary directory (envoy/envoy.log) and in failure messages.
const EnvEnvoyLog = "GATEHOUSE_E2E_ENVOY_LOG"

func componentLevels(level string) string {
	var parts []string
	for _, c := range []string{"ext_authz", "ext_proc", "rate_limit_quota", "filter", "router", "upstream", "config", "http"} {
		parts = append(parts, c+":"+level)
	}
	return strings.Join(parts, ",")
}

// Envoy is one Envoy process.
type Envoy struct {
	t        testing.TB
	bin, dir string
	// Bootstrap is the path of the bootstrap it runs.
	Bootstrap string
	// Admin is its admin address.
	Admin   string
	logPath string

	proc process
}

type envoyOptions struct {
	nodeID, nodeCluster, xds, admin string
	delta                           bool
	tls                             *envoyboot.TLS
}

func startEnvoy(t testing.TB, bin, dir string, o envoyOptions) *Envoy {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bs, err := envoyboot.Render(envoyboot.Options{NodeID: o.nodeID, NodeCluster: o.nodeCluster, XDS: o.xds, Admin: o.admin, Delta: o.delta, TLS: o.tls})
	if err != nil {
		t.Fatal(err)
	}
	e := &Envoy{t: t, bin: bin, dir: dir, Bootstrap: filepath.Join(dir, "bootstrap.yaml"), Admin: o.admin, logPath: filepath.Join(dir, "envoy.log")}
	if err := os.WriteFile(e.Bootstrap, bs, 0o644); err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// StartStaticEnvoy starts an Envoy of a hand-written bootstrap, beside the
// mesh's: for what gatehouse does not render, such as a proxy in front
// that passes client certificates on in x-forwarded-client-cert, or a
// hand-written config that calls gatehouse's services. The bootstrap's
// admin must listen on admin. Envoy is stopped when the test ends.
func StartStaticEnvoy(t testing.TB, bootstrap, admin string) *Envoy {
	t.Helper()
	dir := t.TempDir()
	e := &Envoy{t: t, bin: testenv.Envoy(t), dir: dir, Bootstrap: filepath.Join(dir, "bootstrap.yaml"), Admin: admin, logPath: filepath.Join(dir, "envoy.log")}
	if err := os.WriteFile(e.Bootstrap, []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Start (re)starts Envoy and waits for its admin API.
func (e *Envoy) Start() {
	e.t.Helper()
	if e.proc.running() {
		return
	}
	logFile, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	// One worker thread: the machine is small and shared. No hot restart
	// (it would need shared memory, and a unique base id per Envoy).
	level := os.Getenv(EnvEnvoyLog)
	if level == "" {
		level = "warning"
	}
	cmd := exec.Command(e.bin, "-c", e.Bootstrap, "--disable-hot-restart", "--concurrency", "1",
		"--log-level", "warning", "--component-log-level", componentLevels(level),
		"--drain-time-s", "1", "--parent-shutdown-time-s", "2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		e.t.Fatalf("start envoy: %v", err)
	}
	e.proc.started(cmd, func() { _ = cmd.Wait(); logFile.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !waitFor(ctx, 50*time.Millisecond, func() bool { _, err := e.get("/ready"); return err == nil || e.proc.exited() }) || e.proc.exited() {
		e.t.Fatalf("envoy's admin API did not answer:\n%s", e.LogTail(40))
	}
}

// Stop ends Envoy (SIGTERM, then SIGKILL after 10 s).
func (e *Envoy) Stop() { e.proc.stop(syscall.SIGTERM, 10*time.Second) }

func (e *Envoy) get(path string) ([]byte, error) {
	resp, err := adminClient.Get("http://" + e.Admin + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("envoy GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// Ready reports whether Envoy's /ready says LIVE.
func (e *Envoy) Ready() bool {
	b, err := e.get("/ready")
	return err == nil && strings.TrimSpace(string(b)) == "LIVE"
}

// Stats returns Envoy's counters and gauges whose names match the regular
// expression filter (histograms are left out).
func (e *Envoy) Stats(filter string) map[string]int64 {
	e.t.Helper()
	b, err := e.get("/stats?filter=" + url.QueryEscape(filter))
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}

// Stat returns one counter or gauge, or -1 when Envoy has none of that name.
func (e *Envoy) Stat(name string) int64 {
	b, err := e.get("/stats?filter=" + url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	if err != nil {
		return -1
	}
	_, val, ok := strings.Cut(strings.TrimSpace(string(b)), ": ")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// ConfigDump returns /config_dump (with endpoints) decoded as JSON.
func (e *Envoy) ConfigDump() map[string]any {
	e.t.Helper()
	b, err := e.get("/config_dump?include_eds")
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("config_dump: %v", err)
	}
	return m
}

// DumpSection returns the config_dump entry of one type
// ("ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump",
// "EndpointsConfigDump", ...).
func DumpSection(dump map[string]any, kind string) map[string]any {
	configs, _ := dump["configs"].([]any)
	for _, c := range configs {
		m, _ := c.(map[string]any)
		if t, _ := m["@type"].(string); strings.HasSuffix(t, "."+kind) {
			return m
		}
	}
	return nil
}

// Versions returns the version Envoy last accepted for clusters and
// listeners (the whole-type versions of State-of-the-World xDS), keyed as
// gatehouse's /xds/nodes keys them.
func (e *Envoy) Versions() (map[string]string, error) {
	b, err := e.get("/config_dump")
	if err != nil {
		return nil, err
	}
	var dump map[string]any
	if err := json.Unmarshal(b, &dump); err != nil {
		return nil, err
	}
	out := map[string]string{}
	if s := DumpSection(dump, "ClustersConfigDump"); s != nil {
		out["clusters"], _ = s["version_info"].(string)
	}
	if s := DumpSection(dump, "ListenersConfigDump"); s != nil {
		out["listeners"], _ = s["version_info"].(string)
	}
	return out, nil
}

// LogTail is the end of Envoy's log, for failure messages.
func (e *Envoy) LogTail(n int) string {
	b, _ := os.ReadFile(e.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(tail(lines, n), "\n")
}

// Log returns Envoy's whole log so far.
func (e *Envoy) Log() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

// Post sends a POST to an admin path (e.g. /reset_counters).
func (e *Envoy) Post(path string) {
	e.t.Helper()
	resp, err := adminClient.Post("http://"+e.Admin+path, "text/plain", bytes.NewReader(nil))
	if err != nil {
		e.t.Fatalf("envoy POST %s: %v", path, err)
	}
	resp.Body.Close()
}
