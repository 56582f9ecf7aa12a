package chartcheck

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestConfigMapReload runs the real gatehouse as the chart's pod would: the
// container's args, the ConfigMap laid out as the kubelet mounts it. Each
// `helm upgrade` of the config is then a kubelet-style ..data swap, and the
// test checks both halves of the chart's contract with gatehouse:
//   - a change gatehouse applies live is hot-reloaded, and leaves the pod
//     template (its restart checksum) alone, so the pods are not rolled;
//   - a change gatehouse reads only at start is refused by the running
//     process, and changes the restart checksum, so the pods are rolled.
func TestConfigMapReload(t *testing.T) {
	defaults := loadChart(t).Values["config"].(string)
	var (
		base  map[string]any
		ports []int
		first pod
		mount string
		logs  *syncBuffer
		err   error
	)
	// Ports are picked free and then bound by gatehouse: another process
	// on this shared machine may take one in between, so try again then.
	for attempt := 1; ; attempt++ {
		ports = freePorts(t, 6)
		base = map[string]any{
			"listenHost": "127.0.0.1",
			"ports": map[string]any{
				"admin": ports[0], "authz": ports[1], "extproc": ports[2], "ratelimit": ports[3], "xds": ports[4],
				"adminSensitive": ports[5],
			},
		}
		first = renderPod(t, base, defaults)
		mount = t.TempDir()
		writeConfigMap(t, mount, first.configMap.Data)
		logs, err = startPod(t, first.deployment, mount, ports[0])
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	eventually(t, "/readyz to answer 200", func() bool {
		code, _ := get(admin + "/readyz")
		return code == http.StatusOK
	})

	// Restart-only changes first: each is refused by the running process
	// (which keeps the first config) and rolls the pods.
	restart := []struct {
		name   string
		values map[string]any
		config edit
	}{
		{name: "server.grpc", config: edit{add: "server:\n  grpc: {maxConcurrentStreams: 100}\n"}},
		{name: "server.tracing", config: edit{add: "server:\n  tracing: {otlpEndpoint: 127.0.0.1:4317, insecure: true}\n"}},
		{name: "server.log.format", config: edit{old: "format: json", new: "format: text"}},
		{name: "audit", config: edit{add: "audit:\n  bufferSize: 16\n"}},
		{name: "ports", values: map[string]any{"ports": map[string]any{"ratelimit": ports[3] + 1}}},
		{name: "redis", values: map[string]any{"redis": map[string]any{"addresses": []any{"127.0.0.1:1"}}}},
	}
	for i, tt := range restart {
		values, cfg := withConfig(t, base, tt.values, tt.config.apply(t, defaults))
		next := renderPod(t, values, cfg)
		if checksum(next.deployment) == checksum(first.deployment) {
			t.Errorf("%s changed, but the pod template's checksum did not: the pods would keep the old value forever", tt.name)
		}
		writeConfigMap(t, mount, next.configMap.Data)
		eventually(t, tt.name+": the reload to be rejected", func() bool {
			return reloads(t, admin, "rejected") == i+1
		})
		// Rejected for the right reason: a restart is needed, not a
		// mistake in the test's config.
		if n := countLines(logs.String(), "config reload rejected", "only on restart"); n != i+1 {
			t.Errorf("%s: %d rejections name a restart; want %d:\n%s", tt.name, n, i+1, logs.String())
		}
	}

	// Live changes: applied by the running process, no roll.
	live := []struct {
		name   string
		config edit
		want   string
	}{
		{name: "routes", config: edit{add: "routes:\n  - id: extra\n    match: {prefix: /extra}\n    directResponse: {status: 204}\n    authz: {public: true}\n"}, want: "id: extra"},
		{name: "server.log.level", config: edit{old: "level: info", new: "level: debug"}, want: "level: debug"},
	}
	for i, tt := range live {
		_, cfg := withConfig(t, base, nil, tt.config.apply(t, defaults))
		next := renderPod(t, base, cfg)
		if checksum(next.deployment) != checksum(first.deployment) {
			t.Errorf("%s changed and the pod template's checksum with it: the pods would restart for a change gatehouse reloads", tt.name)
		}
		writeConfigMap(t, mount, next.configMap.Data)
		eventually(t, tt.name+": the reload to be applied", func() bool {
			return reloads(t, admin, "applied") == i+1
		})
		// The sensitive pages are on loopback, a port of their own.
		if _, body := get(fmt.Sprintf("http://127.0.0.1:%d/config", ports[5])); !strings.Contains(body, tt.want) {
			t.Errorf("after the %s reload, /config has no %q:\n%s", tt.name, tt.want, body)
		}
	}
	if n := reloads(t, admin, "rejected"); n != len(restart) {
		t.Errorf("rejected reloads = %d; want %d", n, len(restart))
	}
}

// pod is what one render gives the pod.
type pod struct {
	deployment *appsv1.Deployment
	configMap  *corev1.ConfigMap
}

func renderPod(t *testing.T, values map[string]any, config string) pod {
	t.Helper()
	v := valuesWith(t, values)
	v["config"] = config
	files, err := renderValues(t, v)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o := index(t, decodeAll(t, files))
	return pod{deployment: o.deployment, configMap: o.configMap}
}

// edit changes the config text: old replaced by new, or a YAML document
// added (gatehouse merges documents as it merges files).
type edit struct{ old, new, add string }

func (e edit) apply(t *testing.T, config string) string {
	t.Helper()
	if e.old != "" {
		if !strings.Contains(config, e.old) {
			t.Fatalf("the default config has no %q to change", e.old)
		}
		config = strings.Replace(config, e.old, e.new, 1)
	}
	if e.add != "" {
		config += "---\napiVersion: gatehouse/v1\n" + e.add
	}
	return config
}

// withConfig returns base with extra values merged on top, and config.
func withConfig(t *testing.T, base, extra map[string]any, config string) (map[string]any, string) {
	t.Helper()
	v := valuesWith(t, base)
	for k, x := range extra {
		if m, ok := x.(map[string]any); ok {
			if bm, ok := v[k].(map[string]any); ok {
				for kk, xx := range m {
					bm[kk] = xx
				}
				continue
			}
		}
		v[k] = x
	}
	return v, config
}

func checksum(d *appsv1.Deployment) string {
	return d.Spec.Template.Annotations["checksum/restart-config"]
}

// startPod starts gatehouse with the container's arguments, the config
// directory moved from its mount path to dir, and waits until its admin
// server on adminPort answers. At the end of the test it stops gatehouse
// with SIGTERM and expects it gone within the pod's grace period.
func startPod(t *testing.T, d *appsv1.Deployment, dir string, adminPort int) (*syncBuffer, error) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	args := slices.Clone(c.Args)
	moved := false
	for i, a := range args {
		if strings.HasPrefix(a, "--config=") {
			args[i], moved = "--config="+dir, true
		}
	}
	if !moved {
		t.Fatalf("container args %q name no --config", c.Args)
	}
	cmd := exec.Command(binary(t), args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			return nil, fmt.Errorf("gatehouse exited at start: %v\n%s", err, logs.String())
		default:
		}
		if code, _ := get(healthz); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return nil, fmt.Errorf("gatehouse's admin server did not answer within 20s\n%s", logs.String())
		}
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gatehouse exited with %v after SIGTERM", err)
			}
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("gatehouse still ran %s after SIGTERM (the pod's grace period)", grace)
		}
		if t.Failed() {
			t.Logf("gatehouse log:\n%s", logs.String())
		}
	})
	return logs, nil
}

// countLines counts the lines holding every one of words.
func countLines(s string, words ...string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			n++
		}
	}
	return n
}

var reloadsLine = regexp.MustCompile(`(?m)^gatehouse_config_reloads_total\{result="(\w+)"\} (\d+)$`)

// reloads reads gatehouse_config_reloads_total{result} from /metrics.
func reloads(t *testing.T, admin, result string) int {
	t.Helper()
	_, body := get(admin + "/metrics")
	for _, m := range reloadsLine.FindAllStringSubmatch(body, -1) {
		if m[1] == result {
			var n int
			fmt.Sscan(m[2], &n)
			return n
		}
	}
	return 0
}

func get(url string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// eventually polls cond for up to 20 seconds: a reload waits for the
// debounce (250ms) and the load, nothing slow.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

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
