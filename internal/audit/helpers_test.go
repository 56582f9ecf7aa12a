package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse/gatehouse/internal/config"
)

// testKey is a 32-byte chain key.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig() config.Audit {
	return config.Audit{Stdout: true, BufferSize: 1024, MaxSize: 100 << 20, MaxBackups: 10, Sync: config.AuditSyncNever}
}

func keyed(t testing.TB, cfg config.Audit, key string) config.Audit {
	t.Helper()
	t.Setenv("AUDIT_TEST_KEY", key)
	s, err := config.NewSecretRef("env:AUDIT_TEST_KEY")
	if err != nil {
		t.Fatal(err)
	}
	cfg.ChainKey = resolvedSecret(t, s)
	return cfg
}

// resolvedSecret resolves s the way the loader does, through a config.
func resolvedSecret(t testing.TB, s config.Secret) config.Secret {
	t.Helper()
	cfg, err := config.LoadBytes("t.yaml", []byte("apiVersion: gatehouse/v1\naudit:\n  chainKey: "+s.Ref()+"\n"), config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Audit.ChainKey
}

type testLogger struct {
	*Logger
	reg *prometheus.Registry
}

func start(t *testing.T, cfg config.Audit, stdout io.Writer, o options) *testLogger {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := newLogger(cfg, stdout, reg, nil, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return &testLogger{Logger: l, reg: reg}
}

func (l *testLogger) close(t *testing.T) {
	t.Helper()
	if err := l.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func (l *testLogger) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	switch name {
	case "lines":
		return testutil.ToFloat64(l.m.lines.WithLabelValues(labels...))
	case "dropped":
		return testutil.ToFloat64(l.m.dropped)
	case "lost":
		return testutil.ToFloat64(l.m.lostLines.WithLabelValues(labels...))
	case "errors":
		return testutil.ToFloat64(l.m.writeErrors.WithLabelValues(labels...))
	case "rotations":
		return testutil.ToFloat64(l.m.rotations)
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func event(i int) Event {
	return Event{
		Time: time.Date(2026, 1, 2, 3, 4, 5, i*1000, time.UTC), Kind: KindDecision,
		ID: fmt.Sprintf("d-%d", i), RequestID: fmt.Sprintf("r-%d", i), Route: "orders",
		Decision: "allow", Reason: "ok", AuthMethod: "jwt", Subject: fmt.Sprintf("user-%d", i%7),
		Issuer: "https://idp.example", ClientAddr: "10.0.0.1:4242", Method: "GET", Path: "/orders/42",
		PolicyVersion: "v1", LatencyUS: 87,
	}
}

// logBytes writes n events through a stdout-only Logger and returns what
// it wrote: an audit.start line, n lines and an audit.stop line.
func logBytes(t *testing.T, n int, key []byte) []byte {
	t.Helper()
	var buf syncBuffer
	cfg := testConfig()
	if key != nil {
		cfg = keyed(t, cfg, string(key))
	}
	cfg.BufferSize = n + 1
	l := start(t, cfg, &buf, options{})
	for i := range n {
		l.Record(event(i))
	}
	l.close(t)
	return buf.Bytes()
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// gateWriter blocks the write after arm until release: a sink stuck on a
// slow disk or pipe, made deterministic.
type gateWriter struct {
	syncBuffer
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGate() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.syncBuffer.Write(p)
}

// splitLines splits b into lines without their newlines.
func splitLines(b []byte) [][]byte {
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = bytes.TrimSuffix(l, []byte("\n"))
	}
	return lines
}

func parseAll(t *testing.T, b []byte) []*Line {
	t.Helper()
	var out []*Line
	for i, raw := range splitLines(b) {
		l, err := ParseLine(raw)
		if err != nil {
			t.Fatalf("line %d: ParseLine(%q) = %v", i+1, raw, err)
		}
		out = append(out, l)
	}
	return out
}

// verifyBytes verifies b as one file.
func verifyBytes(t *testing.T, b []byte, keys ...[]byte) *Report {
	t.Helper()
	rep, err := Verify([]Source{memSource("audit.log", b)}, keys)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func memSource(name string, b []byte) Source {
	return Source{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

func mustOK(t *testing.T, rep *Report) {
	t.Helper()
	if rep.Problem != nil {
		t.Fatalf("Verify found %v; want an intact log", rep.Problem)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileSet returns the backups of path, oldest first, then path.
func fileSet(t *testing.T, path string) []string {
	t.Helper()
	bs, err := listBackups(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.path)
	}
	return append(out, path)
}

func fileConfig(t *testing.T) (config.Audit, string) {
	cfg := testConfig()
	cfg.Stdout = false
	path := filepath.Join(t.TempDir(), "audit.log")
	cfg.File = config.OutputPath(path)
	return cfg, path
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}
