package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/config"
)

// line is what is written for each event: the event, its place in the chain
// and, when lines were lost before it, how many.
type line struct {
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	Gap  uint64 `json:"gap,omitempty"`
	Event
}

// Logger is the asynchronous, hash-chained audit writer.
type Logger struct {
	ch      chan Event
	done    chan struct{}
	closing sync.Once
	dropped atomic.Uint64
	log     *slog.Logger

	out     io.Writer
	closer  io.Closer
	seq     uint64
	prev    string
	written prometheus.Counter
	lost    prometheus.Counter
	errors  prometheus.Counter
}

// New starts an audit logger writing to the sinks of cfg; stdout is the
// writer used when cfg.Stdout is set.
func New(cfg config.Audit, stdout io.Writer, reg prometheus.Registerer, log *slog.Logger) (*Logger, error) {
	var sinks []io.Writer
	l := &Logger{
		ch:   make(chan Event, cfg.BufferSize),
		done: make(chan struct{}),
		log:  log,
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_lines_total", Help: "Audit lines written.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_dropped_total", Help: "Audit events dropped because the buffer was full.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_write_errors_total", Help: "Audit lines that could not be written to a sink.",
		}),
	}
	if cfg.File != "" {
		f, err := os.OpenFile(string(cfg.File), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", cfg.File, err)
		}
		sinks = append(sinks, f)
		l.closer = f
	}
	if cfg.Stdout {
		sinks = append(sinks, stdout)
	}
	l.out = io.MultiWriter(sinks...)
	if reg != nil {
		for _, c := range []prometheus.Collector{l.written, l.lost, l.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("audit: register metrics: %w", err)
			}
		}
	}
	go l.run()
	l.Record(Event{Kind: KindStart})
	return l, nil
}

// Record queues e. It never blocks: when the buffer is full, the event is
// dropped and counted, and the next line written carries the gap.
func (l *Logger) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	// Defence in depth: a path never carries its query string.
	if i := strings.IndexByte(e.Path, '?'); i >= 0 {
		e.Path = e.Path[:i]
	}
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
		l.lost.Inc()
	}
}

func (l *Logger) run() {
	defer close(l.done)
	for e := range l.ch {
		l.write(e)
	}
}

func (l *Logger) write(e Event) {
	l.seq++
	ln := line{Seq: l.seq, Prev: l.prev, Gap: l.dropped.Swap(0), Event: e}
	body, err := json.Marshal(ln)
	if err != nil {
		l.errors.Inc()
		l.log.Error("audit: encode", "err", err)
		return
	}
	sum := sha256.Sum256(append([]byte(l.prev+"\n"), body...))
	hash := hex.EncodeToString(sum[:])
	out := make([]byte, 0, len(body)+80)
	out = append(out, body[:len(body)-1]...)
	out = append(out, `,"hash":"`...)
	out = append(out, hash...)
	out = append(out, "\"}\n"...)
	if _, err := l.out.Write(out); err != nil {
		l.errors.Inc()
		l.log.Error("audit: write", "err", err)
	}
	l.prev = hash
	l.written.Inc()
}

// Close writes what is buffered and closes the sinks, waiting at most until
// ctx is done.
func (l *Logger) Close(ctx context.Context) error {
	l.closing.Do(func() { close(l.ch) })
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
