package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary builds gatehouse from this tree once per test binary.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gatehouse")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gatehouse")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gatehouse: %v\n%s", err, out)
	}
	return bin, nil
})

// Binary returns the gatehouse binary built from this tree.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Gatehouse is one `gatehouse serve` process.
type Gatehouse struct {
	t          testing.TB
	bin, dir   string
	ConfigPath string
	Admin      string // admin address
	components string
	// sensitive is the base URL of the sensitive admin pages when they
	// have a listener of their own (over mTLS, with sensitiveClient).
	sensitive       string
	sensitiveClient *http.Client

	proc  process
	mu    sync.Mutex       // logs and audit
	logs  []map[string]any // stderr, JSON log lines
	audit []map[string]any // stdout, audit lines
	grew  chan struct{}
}

func newGatehouse(t testing.TB, bin, dir, config, admin, components string) *Gatehouse {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	g := &Gatehouse{t: t, bin: bin, dir: dir, ConfigPath: filepath.Join(dir, "gatehouse.yaml"), Admin: admin, components: components, grew: make(chan struct{}, 1)}
	if err := writeFileAtomic(g.ConfigPath, config); err != nil {
		t.Fatal(err)
	}
	return g
}

// Start (re)starts the process on its config and waits until /readyz
// answers 200.
func (g *Gatehouse) Start() {
	g.t.Helper()
	if g.proc.running() {
		return
	}
	args := []string{"serve", "--config", g.ConfigPath, "--log-format", "json"}
	if g.components != "" {
		args = append(args, "--components", g.components)
	}
	cmd := exec.Command(g.bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		g.t.Fatal(err)
	}
	logFile, err := os.OpenFile(filepath.Join(g.dir, "gatehouse.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		g.t.Fatalf("start gatehouse: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.read(io.TeeReader(stderr, logFile), &g.logs) }()
	go func() { defer wg.Done(); g.read(stdout, &g.audit) }()
	g.proc.started(cmd, func() {
		wg.Wait()
		_ = cmd.Wait()
		logFile.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !waitFor(ctx, 50*time.Millisecond, func() bool { return g.Ready() || g.proc.exited() }) || g.proc.exited() {
		g.t.Fatalf("gatehouse did not become ready:\n%s", g.LogTail(40))
	}
}

func (g *Gatehouse) read(r io.Reader, into *[]map[string]any) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			m = map[string]any{"msg": "non-json: " + sc.Text()}
		}
		g.mu.Lock()
		*into = append(*into, m)
		g.mu.Unlock()
		select {
		case g.grew <- struct{}{}:
		default:
		}
	}
}

// Stop ends the process: SIGTERM, and a second one as soon as it is in
// its drain delay (which a second signal ends: the tests that are not
// about the drain need not wait it out), then SIGKILL after 10 s.
func (g *Gatehouse) Stop() {
	from := g.logCount()
	g.proc.stopAgain(syscall.SIGTERM, 10*time.Second, func() bool {
		return g.logSince(from, "draining: not ready, still serving for the drain delay")
	})
}

// Terminate ends the process with one SIGTERM, as Kubernetes does: the
// drain delay runs its course (SIGKILL after 60 s). It returns the exit
// code, -1 when the process was not running.
func (g *Gatehouse) Terminate() int { return g.proc.stop(syscall.SIGTERM, 60*time.Second) }

// logSince reports whether a log line with msg was written at index from
// or later.
func (g *Gatehouse) logSince(from int, msg string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.logs[min(from, len(g.logs)):] {
		if l["msg"] == msg {
			return true
		}
	}
	return false
}

// Kill ends the process at once (SIGKILL: a crash).
func (g *Gatehouse) Kill() { g.proc.stop(syscall.SIGKILL, 0) }

// Ready reports whether /readyz answers 200.
func (g *Gatehouse) Ready() bool {
	resp, err := adminClient.Get("http://" + g.Admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

var adminClient = &http.Client{Timeout: 3 * time.Second}

// Get fetches an admin path and decodes its JSON answer into v: from the
// sensitive pages' own listener when the config gives them one.
func (g *Gatehouse) Get(path string, v any) error {
	c, base := adminClient, "http://"+g.Admin
	if g.sensitive != "" && path != "/readyz" && path != "/healthz" && path != "/metrics" {
		c, base = g.sensitiveClient, g.sensitive
	}
	resp, err := c.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Metrics returns the /metrics text.
func (g *Gatehouse) Metrics() string {
	resp, err := adminClient.Get("http://" + g.Admin + "/metrics")
	if err != nil {
		g.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Metric sums the samples of a metric whose series contain every given
// label pair (`name{a="b"}` substrings), or -1 when there are none.
func (g *Gatehouse) Metric(name string, labels ...string) float64 {
	sum, found := 0.0, false
	for _, line := range strings.Split(g.Metrics(), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// XDSNode is one node of /xds/nodes.
type XDSNode struct {
	ID        string                  `json:"id"`
	Cluster   string                  `json:"cluster"`
	Group     string                  `json:"group"`
	Protocol  string                  `json:"protocol"`
	Connected bool                    `json:"connected"`
	Types     map[string]XDSTypeState `json:"types"`
}

// XDSTypeState is what one node holds of one resource type.
type XDSTypeState struct {
	Sent      string   `json:"sent"`
	Acked     string   `json:"acked"`
	Current   string   `json:"current"`
	InSync    bool     `json:"inSync"`
	Resources int      `json:"resources"`
	NACK      *XDSNACK `json:"nack"`
}

// XDSNACK is the last NACK of a resource type.
type XDSNACK struct {
	Version string           `json:"version"`
	Detail  string           `json:"detail"`
	Origins []map[string]any `json:"origins"`
}

// XDSNodes is /xds/nodes.
type XDSNodes struct {
	Version string    `json:"version"`
	Nodes   []XDSNode `json:"nodes"`
}

// Node returns the node of /xds/nodes with the given id.
func (g *Gatehouse) Node(id string) (*XDSNode, error) {
	var n XDSNodes
	if err := g.Get("/xds/nodes", &n); err != nil {
		return nil, err
	}
	for i := range n.Nodes {
		if n.Nodes[i].ID == id {
			return &n.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("node %q not in /xds/nodes", id)
}

// Reload writes a new config (atomically, as an editor or a ConfigMap
// does), sends SIGHUP, and waits for the reload's outcome in the log. It
// returns the log line ("config reloaded" or "config reload rejected").
func (g *Gatehouse) Reload(config string) map[string]any {
	g.t.Helper()
	from := g.logCount()
	if err := writeFileAtomic(g.ConfigPath, config); err != nil {
		g.t.Fatal(err)
	}
	g.proc.signal(syscall.SIGHUP)
	return g.WaitLog(from, "a reload", func(m map[string]any) bool {
		msg, _ := m["msg"].(string)
		return msg == "config reloaded" || strings.HasPrefix(msg, "config reload rejected")
	})
}

func (g *Gatehouse) logCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.logs)
}

// WaitLog waits (20 s at most) for a log line from index from on that
// matches, and returns it.
func (g *Gatehouse) WaitLog(from int, what string, match func(map[string]any) bool) map[string]any {
	g.t.Helper()
	deadline := time.After(20 * time.Second)
	for i := from; ; {
		g.mu.Lock()
		for ; i < len(g.logs); i++ {
			if match(g.logs[i]) {
				l := g.logs[i]
				g.mu.Unlock()
				return l
			}
		}
		g.mu.Unlock()
		select {
		case <-g.grew:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			g.t.Fatalf("no log line for %s within 20s:\n%s", what, g.LogTail(30))
			return nil
		}
	}
}

// Logs returns the log lines so far.
func (g *Gatehouse) Logs() []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]any(nil), g.logs...)
}

// Audit returns the audit lines so far.
func (g *Gatehouse) Audit() []map[string]any {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]map[string]any(nil), g.audit...)
}

// WaitAudit waits (10 s at most) for an audit line that matches.
func (g *Gatehouse) WaitAudit(what string, match func(map[string]any) bool) map[string]any {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range g.Audit() {
			if match(l) {
				return l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("no audit line for %s within 10s; last lines:\n%v", what, tail(g.Audit(), 10))
	return nil
}

// LogTail is the last n log lines, for failure messages.
func (g *Gatehouse) LogTail(n int) string {
	var b strings.Builder
	for _, l := range tail(g.Logs(), n) {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func tail[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// writeFileAtomic replaces path by rename, as editors and Kubernetes do.
func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// StartGatehouse runs `gatehouse serve` (the binary built from this tree)
// on config alone, outside a mesh, with its admin server at admin (the
// config's server.admin.address), waits until /readyz answers 200, and
// stops it when the test ends.
func StartGatehouse(t testing.TB, config, admin string) *Gatehouse {
	t.Helper()
	g := newGatehouse(t, Binary(t), t.TempDir(), config, admin, "")
	g.Start()
	t.Cleanup(g.Stop)
	return g
}
