package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/internal/config"
)

// maxBatch bounds the lines written with one write call: enough to make a
// burst cheap, small enough to keep the buffer a few hundred KiB.
const maxBatch = 512

// item is an event in the buffer, with the count of events dropped before
// it was recorded, so that a gap lands on the first line after the loss.
type item struct {
	e    Event
	lost uint64
}

// Logger is the asynchronous, hash-chained audit writer. Record hands an
// event to a bounded buffer and returns; one goroutine (the writer)
// encodes, chains and writes the lines to each sink.
type Logger struct {
	// mu orders Record against Close: Record sends under the read lock,
	// Close closes the buffer under the write lock, so no send can hit a
	// closed channel and no event can slip in after the final drain.
	mu     sync.RWMutex
	closed bool
	ch     chan item
	// lost counts events dropped because the buffer was full.
	lost      atomic.Uint64
	lateDrops atomic.Uint64
	done      chan struct{}
	log       *slog.Logger
	m         *metrics
	// w is the writer goroutine's state, in its own allocation so that
	// its writes do not share a cache line with what Record reads.
	w *writer
}

// writer is owned by the writer goroutine (and by New before it starts).
type writer struct {
	l        *Logger
	sinks    []*sink
	file     *rotFile
	fileSink *sink
	h        *Hasher
	ev       []byte
	lastLost uint64
	sync     config.AuditSync
	interval time.Duration
	closeErr error
}

// options are test hooks.
type options struct {
	openFile func(string) (fileHandle, error)
	now      func() time.Time
}

// New starts an audit logger writing to the sinks of cfg; stdout is the
// writer used when cfg.Stdout is set. The file sink continues the chain
// found at the end of cfg.File (or of its newest backup), and each sink
// begins with an audit.start line that says how it started. New fails when
// a sink cannot be opened or its start line cannot be written: gatehouse
// then refuses to start rather than decide without an audit trail.
func New(cfg config.Audit, stdout io.Writer, reg prometheus.Registerer, log *slog.Logger) (*Logger, error) {
	return newLogger(cfg, stdout, reg, log, options{})
}

func newLogger(cfg config.Audit, stdout io.Writer, reg prometheus.Registerer, log *slog.Logger, o options) (*Logger, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.openFile == nil {
		o.openFile = openAppend
	}
	if o.now == nil {
		o.now = time.Now
	}
	if cfg.File == "" && !cfg.Stdout {
		return nil, errors.New("audit: no sink: set audit.file or audit.stdout")
	}
	if cfg.ChainKey.IsSet() && len(cfg.ChainKey.Value()) == 0 {
		// Fail closed: never write a plain chain when a keyed one was
		// asked for (a config loaded with SkipSecrets).
		return nil, fmt.Errorf("audit: chainKey %s was not resolved", cfg.ChainKey.Ref())
	}
	if cfg.Stdout && stdout == nil {
		return nil, errors.New("audit: audit.stdout is set but no standard output was given")
	}
	size := max(cfg.BufferSize, 1)
	l := &Logger{
		ch:   make(chan item, size),
		done: make(chan struct{}),
		log:  log,
	}
	w := &writer{l: l, h: NewHasher(cfg.ChainKey.Value()), sync: cfg.Sync, interval: cfg.SyncInterval.D()}
	l.w = w
	m, err := newMetrics(reg, func() float64 { return float64(len(l.ch)) })
	if err != nil {
		return nil, err
	}
	l.m = m
	m.capacity.Set(float64(size))

	now := o.now()
	if cfg.File != "" {
		path := string(cfg.File)
		// The tail is read under the file's lock: nobody else appends
		// while we decide how to continue.
		f, err := openRotFile(path, int64(cfg.MaxSize), cfg.MaxBackups, o.openFile, o.now)
		if err != nil {
			return nil, err
		}
		r := readResume(path, w.h)
		s := newSink("file", f, f, m, log)
		s.st = chainState{torn: r.torn, midLine: r.midLine, owedNL: r.owedNL, after: r.after}
		if r.head != nil {
			s.st.head, s.st.hasHead = *r.head, true
		}
		s.committed = s.st
		w.file, w.fileSink = f, s
		if err := w.start(s, now, r.detail); err != nil {
			_ = f.close()
			return nil, err
		}
		w.syncFile()
	}
	if cfg.Stdout {
		s := newSink("stdout", stdout, nil, m, log)
		if err := w.start(s, now, "new chain on standard output"); err != nil {
			if w.file != nil {
				_ = w.file.close()
			}
			return nil, err
		}
	}
	log.Info("audit log started", "file", string(cfg.File), "stdout", cfg.Stdout, "keyed", w.h.Keyed(), "buffer", size, "sync", string(cfg.Sync))
	go w.run()
	return l, nil
}

// start writes a sink's audit.start line synchronously.
func (w *writer) start(s *sink, now time.Time, detail string) error {
	w.ev = appendEvent(w.ev[:0], &Event{Time: now, Kind: KindStart, Detail: detail})
	s.add(w.ev, 0, w.h, w.l.m)
	s.flush()
	if s.st.gap > 0 {
		// The start line was not written: it became a gap.
		return fmt.Errorf("audit: cannot write the start line to %s: %w", s.name, s.lastErr)
	}
	w.sinks = append(w.sinks, s)
	return nil
}

// Record queues e. It never blocks: when the buffer is full, the event is
// dropped and counted, and the next line written carries the gap. The
// path is cut at '?': a query string may hold a token and never enters
// the log.
func (l *Logger) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Path = StripQuery(e.Path)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.m.dropped.Inc()
		if l.lateDrops.Add(1) == 1 {
			l.log.Error("audit event recorded after close: dropped", "kind", string(e.Kind))
		}
		return
	}
	select {
	case l.ch <- item{e: e, lost: l.lost.Load()}:
	default:
		l.lost.Add(1)
		l.m.dropped.Inc()
	}
	l.mu.RUnlock()
}

// StripQuery cuts a request path at its query string (or fragment), which
// may carry tokens, signatures or personal data.
func StripQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if i := strings.IndexByte(p, '#'); i >= 0 {
		p = p[:i]
	}
	return p
}

func (w *writer) run() {
	l := w.l
	defer close(l.done)
	var tick <-chan time.Time
	if w.file != nil && w.sync == config.AuditSyncInterval && w.interval > 0 {
		t := time.NewTicker(w.interval)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]item, 0, maxBatch)
	for {
		select {
		case it, ok := <-l.ch:
			if !ok {
				w.finish()
				return
			}
			batch = append(batch[:0], it)
			open := true
		drain:
			for len(batch) < maxBatch {
				select {
				case it, ok := <-l.ch:
					if !ok {
						open = false
						break drain
					}
					batch = append(batch, it)
				default:
					break drain
				}
			}
			w.write(batch)
			clear(batch) // do not keep the events' strings alive
			if !open {
				w.finish()
				return
			}
		case <-tick:
			w.syncFile()
		}
	}
}

// write encodes each event once and adds its line to every sink's chain,
// then writes each sink's lines with one call.
func (w *writer) write(batch []item) {
	for i := range batch {
		var lost uint64
		if it := batch[i].lost; it > w.lastLost {
			lost, w.lastLost = it-w.lastLost, it
		}
		w.ev = appendEvent(w.ev[:0], &batch[i].e)
		for _, s := range w.sinks {
			s.add(w.ev, lost, w.h, w.l.m)
		}
	}
	for _, s := range w.sinks {
		s.flush()
	}
	if w.sync == config.AuditSyncAlways {
		w.syncFile()
	}
}

func (w *writer) syncFile() {
	if w.file == nil || !w.file.dirty {
		return
	}
	t := time.Now()
	err := w.file.sync()
	w.l.m.fsync.Observe(time.Since(t).Seconds())
	if err != nil {
		w.fileSink.fail("sync", err, 0)
	}
}

// finish writes the audit.stop line (with the gap of events dropped after
// the last line), syncs and closes the file.
func (w *writer) finish() {
	l := w.l
	lost := l.lost.Load() - w.lastLost
	w.lastLost += lost
	detail := "closed"
	if lost > 0 {
		detail = fmt.Sprintf("closed; %d events were dropped after the last line (buffer full)", lost)
	}
	w.ev = appendEvent(w.ev[:0], &Event{Time: time.Now(), Kind: KindStop, Detail: detail})
	for _, s := range w.sinks {
		s.add(w.ev, lost, w.h, w.l.m)
		s.flush()
	}
	if w.file != nil {
		if err := w.file.close(); err != nil {
			w.fileSink.fail("close", err, 0)
			w.closeErr = fmt.Errorf("audit: close: %w", err)
		}
	}
	for _, s := range w.sinks {
		if s.st.gap > 0 || s.st.torn > 0 {
			// The stop line itself failed: nothing after it will say so.
			l.log.Error("audit log closed with unrecorded losses", "sink", s.name, "lines_lost", s.st.gap, "torn_bytes", s.st.torn)
		}
	}
	l.log.Info("audit log closed", "lines_dropped", w.lastLost)
}

// Close stops taking events, writes what is buffered and an audit.stop
// line, and closes the sinks, waiting at most until ctx is done (the
// writer then finishes on its own). It may be called more than once.
func (l *Logger) Close(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.ch)
	}
	l.mu.Unlock()
	select {
	case <-l.done:
		return l.w.closeErr
	case <-ctx.Done():
		l.log.Error("audit close timed out; the writer goes on in the background", "buffered", len(l.ch))
		return fmt.Errorf("audit: close: %w", ctx.Err())
	}
}
