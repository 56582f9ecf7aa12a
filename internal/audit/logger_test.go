package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/config"
)

func TestLoggerWritesChain(t *testing.T) {
	b := logBytes(t, 3, nil)
	lines := parseAll(t, b)
	if len(lines) != 5 {
		t.Fatalf("got %d lines; want start, 3 events, stop", len(lines))
	}
	if lines[0].Kind != KindStart || !lines[0].Genesis() || lines[4].Kind != KindStop {
		t.Errorf("kinds %s..%s; want audit.start (seq 1) .. audit.stop", lines[0].Kind, lines[4].Kind)
	}
	for i, l := range lines[1:4] {
		if l.ID != fmt.Sprintf("d-%d", i) || l.Seq != uint64(i+2) {
			t.Errorf("line %d: id %s seq %d; want d-%d seq %d", i+2, l.ID, l.Seq, i, i+2)
		}
	}
	rep := verifyBytes(t, b)
	mustOK(t, rep)
	if rep.Lines != 5 || rep.ChainCount != 1 || !rep.Stopped || rep.Lost != 0 {
		t.Errorf("Verify = %d lines, %d chains, stopped %v, lost %d; want 5, 1, true, 0", rep.Lines, rep.ChainCount, rep.Stopped, rep.Lost)
	}
}

func TestRecordStripsQuery(t *testing.T) {
	var buf syncBuffer
	l := start(t, testConfig(), &buf, options{})
	for _, p := range []string{"/cb?code=SECRET&state=x", "/a#frag?token=SECRET", "/plain", "?only=SECRET"} {
		l.Record(Event{Kind: KindDecision, Path: p})
	}
	l.close(t)
	out := string(buf.Bytes())
	if strings.Contains(out, "SECRET") || strings.Contains(out, "?") {
		t.Fatalf("audit output holds a query string:\n%s", out)
	}
	var paths []string
	for _, l := range parseAll(t, buf.Bytes()) {
		if l.Kind == KindDecision {
			paths = append(paths, l.Path)
		}
	}
	if got, want := strings.Join(paths, ","), "/cb,/a,/plain,"; got != want {
		t.Errorf("paths = %s; want %s", got, want)
	}
}

func TestStripQuery(t *testing.T) {
	for in, want := range map[string]string{"/a?b": "/a", "/a": "/a", "": "", "/x#y": "/x", "/p?q#r": "/p"} {
		if got := StripQuery(in); got != want {
			t.Errorf("StripQuery(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestGapUnderFullBuffer blocks the sink, fills the buffer, drops three
// events and checks that the next line written records the gap.
func TestGapUnderFullBuffer(t *testing.T) {
	for _, tt := range []struct {
		name      string
		recordOne bool // record an event after the loss
	}{
		{"next event line", true},
		{"stop line", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gate := newGate()
			cfg := testConfig()
			cfg.BufferSize = 4
			l := start(t, cfg, gate, options{})
			gate.armed.Store(true)
			l.Record(event(0)) // the writer takes it and blocks in Write
			<-gate.entered
			for i := 1; i <= 4; i++ {
				l.Record(event(i)) // fills the buffer
			}
			for i := 5; i <= 7; i++ {
				l.Record(event(i)) // dropped
			}
			if got := l.counter(t, "dropped"); got != 3 {
				t.Fatalf("dropped = %v; want 3", got)
			}
			close(gate.release)
			if tt.recordOne {
				for len(l.ch) == cap(l.ch) {
					runtime.Gosched()
				}
				l.Record(event(8))
			}
			l.close(t)

			lines := parseAll(t, gate.Bytes())
			var gaps []string
			for _, ln := range lines {
				if ln.Gap > 0 {
					gaps = append(gaps, fmt.Sprintf("%s %s gap %d", ln.Kind, ln.ID, ln.Gap))
				}
			}
			want := "audit.stop  gap 3"
			if tt.recordOne {
				want = "authz.decision d-8 gap 3"
			}
			if got := strings.Join(gaps, "; "); got != want {
				t.Errorf("gaps = %q; want %q", got, want)
			}
			rep := verifyBytes(t, gate.Bytes())
			mustOK(t, rep)
			if rep.Lost != 3 || rep.GapCount != 1 {
				t.Errorf("Verify: lost %d in %d gaps; want 3 in 1", rep.Lost, rep.GapCount)
			}
		})
	}
}

func TestCloseDrains(t *testing.T) {
	gate := newGate()
	cfg := testConfig()
	cfg.BufferSize = 1000
	l := start(t, cfg, gate, options{})
	gate.armed.Store(true)
	l.Record(event(0))
	<-gate.entered
	for i := 1; i < 1000; i++ {
		l.Record(event(i))
	}
	close(gate.release)
	l.close(t)
	lines := parseAll(t, gate.Bytes())
	if len(lines) != 1002 {
		t.Fatalf("got %d lines; want 1002 (start, 1000 events, stop)", len(lines))
	}
	mustOK(t, verifyBytes(t, gate.Bytes()))
	if got := l.counter(t, "lines", "stdout"); got != 1002 {
		t.Errorf("lines_total = %v; want 1002", got)
	}
}

// TestConcurrentRecord records from many goroutines into a small buffer:
// every event is either written or counted in a gap, and the chain holds.
func TestConcurrentRecord(t *testing.T) {
	var buf syncBuffer
	cfg := testConfig()
	cfg.BufferSize = 16
	l := start(t, cfg, &buf, options{})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				l.Record(event(w*each + i))
			}
		})
	}
	wg.Wait()
	l.close(t)
	rep := verifyBytes(t, buf.Bytes())
	mustOK(t, rep)
	written := rep.Lines - 2
	if written+int64(rep.Lost) != workers*each {
		t.Errorf("written %d + lost %d = %d; want %d", written, rep.Lost, written+int64(rep.Lost), workers*each)
	}
	if got := l.counter(t, "dropped"); uint64(got) != rep.Lost {
		t.Errorf("dropped_total = %v; the log records %d lost", got, rep.Lost)
	}
}

func TestRecordAfterClose(t *testing.T) {
	var buf syncBuffer
	l := start(t, testConfig(), &buf, options{})
	l.close(t)
	l.close(t) // twice is fine
	l.Record(event(1))
	if got := l.counter(t, "dropped"); got != 1 {
		t.Errorf("dropped = %v; want 1", got)
	}
	if n := len(parseAll(t, buf.Bytes())); n != 2 {
		t.Errorf("got %d lines; want start and stop only", n)
	}
}

// TestRecordRacesClose records while another goroutine closes: no panic,
// and nothing is lost without being counted.
func TestRecordRacesClose(t *testing.T) {
	var buf syncBuffer
	l := start(t, testConfig(), &buf, options{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 300 {
				l.Record(event(i))
			}
		})
	}
	l.close(t)
	wg.Wait()
	rep := verifyBytes(t, buf.Bytes())
	mustOK(t, rep)
	if got := rep.Lines - 2 + int64(l.counter(t, "dropped")); got != 1200 {
		t.Errorf("written + dropped = %d; want 1200", got)
	}
}

func TestCloseTimeout(t *testing.T) {
	gate := newGate()
	l := start(t, testConfig(), gate, options{})
	gate.armed.Store(true)
	l.Record(event(0))
	<-gate.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close(cancelled) = %v; want context.Canceled", err)
	}
	close(gate.release)
	l.close(t) // the writer finishes; a second Close waits for it
	mustOK(t, verifyBytes(t, gate.Bytes()))
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(t *testing.T) config.Audit
		wantErr string
	}{
		{"no sink", func(*testing.T) config.Audit { c := testConfig(); c.Stdout = false; return c }, "no sink"},
		{"unresolved key", func(t *testing.T) config.Audit {
			c := testConfig()
			var err error
			if c.ChainKey, err = config.NewSecretRef("env:NEVER_RESOLVED"); err != nil {
				t.Fatal(err)
			}
			return c
		}, "not resolved"},
		{"file in a file", func(t *testing.T) config.Audit {
			c, path := fileConfig(t)
			writeFile(t, path, "x")
			c.File = config.OutputPath(path + "/audit.log")
			return c
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newLogger(tt.cfg(t), nil, nil, nil, options{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// A sink that fails at start keeps gatehouse from starting.
func TestNewFailsWhenStartLineCannotBeWritten(t *testing.T) {
	_, err := newLogger(testConfig(), failWriter{}, nil, nil, options{})
	if err == nil || !strings.Contains(err.Error(), "start line") || !strings.Contains(err.Error(), "broken pipe") {
		t.Fatalf("New = %v; want an error about the start line", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestMetricsRegistered(t *testing.T) {
	var buf syncBuffer
	l := start(t, testConfig(), &buf, options{})
	l.Record(event(1))
	l.close(t)
	mfs, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"gatehouse_audit_lines_total", "gatehouse_audit_dropped_total", "gatehouse_audit_last_seq", "gatehouse_audit_buffer_events", "gatehouse_audit_buffer_capacity"} {
		if !got[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
	// Two loggers on one registry is a wiring mistake, reported.
	if _, err := newLogger(testConfig(), &buf, l.reg, nil, options{}); err == nil || !strings.Contains(err.Error(), "register") {
		t.Errorf("second New on one registry = %v; want a register error", err)
	}
}
