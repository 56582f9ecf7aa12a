// Package process tests the gatehouse binary as users run it: a real
// process, real signals (SIGHUP reloads, SIGTERM drains), logs on stderr
// and audit lines on stdout.
package process

import (
	"bufio"
	"context"
	"encoding/json"
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

const cfg = `apiVersion: gatehouse/v1
server:
  admin: {address: "127.0.0.1:0"}
  shutdownTimeout: 3s
authz: {address: "127.0.0.1:0"}
ratelimit: {address: "127.0.0.1:0"}
routes:
  - id: one
    match: {prefix: /}
`

// build compiles the binary once per test binary run.
var build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "gatehouse-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gatehouse")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gatehouse").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

type proc struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	seen  chan struct{}
	done  chan error
	// audit is what the process wrote on stdout, once it exited.
	audit strings.Builder
}

// serve starts `gatehouse serve` on the config at path with JSON logs,
// with env added to the test's environment; the process is killed when
// the test ends, or after five minutes at most (a bound on a hung test,
// not a time the test must meet: a flood on a loaded 2-core machine
// took over a minute, and the old one-minute bound killed the process
// mid-test).
func serve(t *testing.T, path string, env ...string) *proc {
	t.Helper()
	bin, err := build()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	p := &proc{seen: make(chan struct{}, 1), done: make(chan error, 1)}
	p.cmd = exec.CommandContext(ctx, bin, "serve", "--config", path, "--log-format", "json")
	p.cmd.Env = append(os.Environ(), env...)
	stderr, _ := p.cmd.StderrPipe()
	stdout, _ := p.cmd.StdoutPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait closes the pipes once the process exits, so both readers must
	// reach EOF before it is called.
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		p.watchLogs(stderr)
	}()
	go func() {
		defer readers.Done()
		b, _ := io.ReadAll(stdout)
		p.audit.Write(b)
	}()
	go func() {
		readers.Wait()
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("gatehouse exited with %v after SIGTERM; want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("gatehouse did not exit 30s after SIGTERM")
	}
}

func (p *proc) watchLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			m = map[string]any{"msg": "non-json: " + sc.Text()}
		}
		p.mu.Lock()
		p.lines = append(p.lines, m)
		p.mu.Unlock()
		select {
		case p.seen <- struct{}{}:
		default:
		}
	}
}

// waitLog waits for a log line for which match is true and returns it.
func (p *proc) waitLog(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for i := 0; ; {
		p.mu.Lock()
		for ; i < len(p.lines); i++ {
			if match(p.lines[i]) {
				l := p.lines[i]
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for log: %s", what)
		}
	}
}

func msgIs(msg string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["msg"] == msg }
}

func TestSignals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := serve(t, path)

	adminLine := p.waitLog(t, "admin serving", func(m map[string]any) bool { return m["msg"] == "serving" && m["component"] == "admin" })
	admin := "http://" + adminLine["address"].(string)
	p.waitLog(t, "started", msgIs("gatehouse started"))
	resp, err := http.Get(admin + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /readyz = %v, %v; want 200", resp, err)
	}
	resp.Body.Close()

	// SIGHUP with an invalid file: rejected, still serving.
	if err := os.WriteFile(path, []byte(cfg+"  - id: BAD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The watcher may see the write first; either way one reload is rejected.
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	rej := p.waitLog(t, "rejected reload", msgIs("config reload rejected; the last good config keeps serving"))
	if !strings.Contains(rej["errors"].(string), `gatehouse.yaml:10: routes[1].id: "BAD" is not a route id`) {
		t.Errorf("rejection log = %v; want the file:line error", rej)
	}

	// SIGHUP with a valid file: applied.
	if err := os.WriteFile(path, []byte(cfg+"  - id: two\n    match: {prefix: /two}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "applied reload", msgIs("config reloaded"))

	// SIGTERM drains and exits 0.
	p.stop(t)
	p.waitLog(t, "draining", msgIs("draining"))
	p.waitLog(t, "stopped", msgIs("stopped"))
	for _, kind := range []string{`"kind":"audit.start"`, `"kind":"config.reject"`, `"kind":"config.change"`} {
		if !strings.Contains(p.audit.String(), kind) {
			t.Errorf("audit stream lacks %s:\n%s", kind, p.audit.String())
		}
	}
}

func TestStartupErrorsExitNonZero(t *testing.T) {
	bin, err := build()
	if err != nil {
		t.Fatalf("go build: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: gatehouse/v1\nserver: {shutdownTimeout: soon}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "serve", "--config", path).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("serve with a bad config: err = %v; want exit status 1", err)
	}
	want := `bad.yaml:2: server.shutdownTimeout: "soon" is not a duration`
	if !strings.Contains(string(out), want) || strings.Contains(string(out), "goroutine") {
		t.Errorf("serve printed %q; want %q and no stack trace", out, want)
	}
}
